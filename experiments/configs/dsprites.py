"""A beta-VAE (Higgins et al. 2017) with beta = 4 on dSprites in the setting of the disentanglement
study of Locatello et al. (2019): the VAE family (``model.kind="vae"``) with
``objective.beta=4`` (disentanglement_lib sweeps beta over 1, 2, 4, 6, 8, 16).

Shared setting (disentanglement_lib's ``unsupervised_study_v1/model_configs/shared.gin``):
``data.name="dsprites_procedural"`` (jaxvae's rendered dSprites, not the original images; see
``jaxvae.data.dsprites``), 10 latents, a Bernoulli decoder, batch 64, Adam (learning rate 1e-4,
beta1 0.9, beta2 0.999, eps 1e-8), 300k steps: disentanglement_lib trains on all 737,280 images,
jaxvae on the training split of 663,552 (the test split holds out 73,728), which is 10,368 steps
per epoch, so 29 epochs = 300,672 steps. Eval batches of 1,024 images divide the test split (72
batches).

The networks are disentanglement_lib's ``conv_encoder`` and ``deconv_decoder`` (690,517
parameters): four 'SAME' stride-2 convolutions of 32, 32, 64, 64 channels with kernels 4, 4, 2, 2
(``model.kernels``), a 256-unit dense layer (``model.conv_hidden``), the means and log-variances;
the decoder a 256-unit and a 1024-unit dense layer (to 4x4x64), then 4x4 stride-2 transposed
convolutions (``model.decoder_kernels``) of 64, 32, 32 and 1 channels. Weights are drawn Glorot uniform
as TensorFlow's layers draw them (``model.weight_init``; biases zero). What remains different: in
the transposed convolutions the kernel's orientation (a flip of each kernel, the same family of
functions and the same initial distribution). Without the three keys the conv backbone is
jaxvae's default, 3x3 throughout and no 256-unit layers (161,685 parameters), about twice as fast.

The whole training split is 2.7 GB on the device (uint8; 10.9 GB as float32), rendering it takes
a few minutes; a quick run: ``--config.data.limit_train=20000 --config.train.epochs=1``.
"""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.model.kind = "vae"
    config.objective.beta = 4.0
    config.data.name = "dsprites_procedural"
    config.model.architecture = "conv"
    config.model.channels = (32, 32, 64, 64)
    config.model.kernels = (4, 4, 2, 2)
    config.model.decoder_kernels = (4, 4, 4, 4)
    config.model.conv_hidden = (256,)
    config.model.weight_init = "glorot_uniform"
    config.model.latent_dim = 10
    config.model.likelihood = "bernoulli"
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-4
    config.train.adam_eps = 1e-8
    config.train.lr_schedule = "constant"
    config.train.batch_size = 64
    config.train.epochs = 29
    config.eval.batch_size = 1024
    return config
