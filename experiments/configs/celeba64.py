"""A conv VAE on CelebA 64x64 (``data.name="celeb_a"``), with the discretized logistic mixture
decoder: the likelihood for 8-bit colour images (a Bernoulli decoder keeps RGB reconstructions
grey; see the README's "Data").

Data: TFDS's ``celeb_a`` through its own builder, each aligned face centre-cropped to 148x148
and resized to 64x64 (PIL bilinear), the common VAE protocol (PyTorch-VAE's CelebA benchmark);
train 162,770 and test 19,962 images, attributes ignored (``jaxvae.data.tfds_celeb_a``). The
training split is 8 GB as float32, above ``data.stream_threshold_mb``, so it streams from the
array_record files. Prepare it once with ``--config.data.download=true`` (TFDS downloads about
1.4 GB), or copy a prepared ``tensorflow_datasets/celeb_a`` into ``data.tfds_data_dir``.

Model: four stride-2 conv levels (32, 64, 128, 256 channels: 64 -> 4), 128 latents (as
PyTorch-VAE's), 5 logistic components per pixel and channel. Budget: 20 epochs of batch 128
(25,420 steps), Adam 1e-3. A quick look: ``--config.data.limit_train=20000
--config.train.epochs=1``.
"""

from jaxvae.config import base_config


def get_config():
    config = base_config()
    config.data.name = "celeb_a"
    config.data.image_size = 64
    config.data.binarize = "none"
    config.model.architecture = "conv"
    config.model.channels = (32, 64, 128, 256)
    config.model.latent_dim = 128
    config.model.likelihood = "logistic_mixture"
    config.model.num_mixtures = 5
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.batch_size = 128
    config.train.epochs = 20
    config.eval.batch_size = 500
    return config
