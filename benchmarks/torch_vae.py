"""PyTorch reference VAEs for jaxvae's benchmarks (docs/benchmarks.md).

A standalone script that runs in its own environment (`make bench-env` creates .venv-torch);
PyTorch is never a dependency of jaxvae. It trains a VAE on Fashion-MNIST with the protocol of
the PyTorch examples VAE (Adam lr 1e-3, batch 128, loss = Bernoulli cross-entropy summed over
pixels and batch + analytic KL summed over latents and batch) and reports throughput and the test
negative ELBO; with --iwae-k it also times the importance-weighted (IWAE) NLL evaluation.

    .venv-torch/bin/python benchmarks/torch_vae.py --model mlp --epochs 10 --json
    .venv-torch/bin/python benchmarks/torch_vae.py --model conv --epochs 1 --max-steps 200
    .venv-torch/bin/python benchmarks/torch_vae.py --model vampprior --epochs 2 --max-steps 500
    .venv-torch/bin/python benchmarks/torch_vae.py --model mlp --epochs 10 \\
        --iwae-k 5000 --iwae-num 100 --json
    python3 benchmarks/torch_vae.py --model mlp --epochs 3 --device cuda --batch-size 8192 --json

On a GPU (``--device cuda``) data and model live on the device, the running loss is summed there
and read once per epoch (no per-step synchronisation), and each epoch's time ends with
``torch.cuda.synchronize()``.

Data: the original Fashion-MNIST IDX gz files, read with numpy + gzip from
$JAXVAE_FASHION_MNIST_DIR (default /usr/share/datasets/fashion-mnist). Pixels are scaled to
[0, 1] float32 and used directly as targets of a Bernoulli likelihood (no binarisation).

Shuffling uses no DataLoader: the whole training set is one in-memory tensor, and each epoch
indexes it with a fresh torch.randperm. The last partial batch is dropped (60000 // 128 = 468
steps per epoch), as jaxvae does.

``--model gated`` and ``--model vampprior`` are the Exemplar-VAE study's models with its protocol
(``EXEMPLAR``: batch 100, Adam 5e-4, dynamic binarization, KL warm-up), for
``benchmarks/exemplar_speed.py``; they train on all 60k images (the study trains on 50k and
validates on 10k, which changes nothing per step).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
# Steps/images of the full IWAE protocol, used to extrapolate a timed subset.
IWAE_PROTOCOL_K = 5000
IWAE_PROTOCOL_NUM = 10000


# --------------------------------------------------------------------------- data


def _read_idx_images(path: Path) -> np.ndarray:
    """Reads an IDX3 uint8 image file (gzipped or not) into an (N, 28, 28) uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = np.frombuffer(data, dtype=">u4", count=4, offset=0)
    if magic != 2051:
        raise ValueError(f"{path}: not an IDX3 image file (magic {magic})")
    images = np.frombuffer(data, dtype=np.uint8, count=int(n * rows * cols), offset=16)
    return images.reshape(int(n), int(rows), int(cols))


def _find(data_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (data_dir / name).exists():
            return data_dir / name
    raise FileNotFoundError(
        f"{stem}[.gz] not found in {data_dir} (set JAXVAE_FASHION_MNIST_DIR or run `make data`)"
    )


def load_fashion_mnist(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (train, test) float32 tensors of shape (N, 1, 28, 28) with values in [0, 1]."""
    out = []
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        images = _read_idx_images(_find(data_dir, stem)).astype(np.float32) / 255.0
        out.append(torch.from_numpy(images).unsqueeze(1).contiguous())
    return out[0], out[1]


# --------------------------------------------------------------------------- models


class MLPVAE(nn.Module):
    """784-400-20 ReLU MLP VAE of the PyTorch examples; the decoder returns logits."""

    latent_dim = 20

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.fc1(x.reshape(-1, 784)))
        return self.fc21(h), self.fc22(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Returns flat (..., 784) logits."""
        return self.fc4(F.relu(self.fc3(z)))


class ConvVAE(nn.Module):
    """Two stride-2 conv layers down to 64x7x7, 16 latents, two transposed convs back up."""

    latent_dim = 16

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, stride=2, padding=1)  # 28 -> 14
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)  # 14 -> 7
        self.fc_enc = nn.Linear(64 * 7 * 7, 2 * 16)
        self.fc_dec = nn.Linear(16, 64 * 7 * 7)
        self.deconv1 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)
        self.deconv2 = nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.conv1(x.reshape(-1, 1, 28, 28)))
        h = F.relu(self.conv2(h))
        stats = self.fc_enc(h.flatten(1))
        return stats[:, :16], stats[:, 16:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Returns flat (..., 784) logits."""
        lead = z.shape[:-1]
        h = F.relu(self.fc_dec(z.reshape(-1, 16))).view(-1, 64, 7, 7)
        h = F.relu(self.deconv1(h))
        return self.deconv2(h).reshape(*lead, 784)


class GatedDense(nn.Module):
    """``h = (W x + b) * sigmoid(V x + c)``, jaxvae's ``layer="gated"`` (no further activation)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.h = nn.Linear(n_in, n_out)
        self.g = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


class GatedVAE(nn.Module):
    """The Exemplar-VAE study's Gaussian-prior VAE (experiments/studies/exemplar_fmnist.py):
    two gated 300-unit layers each way, 40 latents, a dense head to ``(mean, log_var)``, the
    log-variance clipped to [-6, 2] (the reference code's hardtanh, jaxvae's
    ``model.log_var_range``)."""

    latent_dim = 40

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(GatedDense(784, 300), GatedDense(300, 300), nn.Linear(300, 80))
        self.dec = nn.Sequential(GatedDense(40, 300), GatedDense(300, 300), nn.Linear(300, 784))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.enc(x.reshape(-1, 784))
        return stats[:, :40], torch.clamp(stats[:, 40:], -6.0, 2.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Returns flat (..., 784) logits."""
        return self.dec(z)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Per-example KL to N(0, I), analytic."""
        return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def _diag_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
    return -0.5 * torch.sum(
        math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar), dim=-1
    )


class VampPriorVAE(GatedVAE):
    """The same VAE with the VampPrior (Tomczak and Welling 2018) as jaxvae's ``vampprior``: 500
    pseudo-inputs (a [500, 784] parameter, initial values N(0.05, 0.01^2), clipped to [0, 1] as
    the reference's hardtanh), passed through the encoder at every step; the KL is the one-sample
    estimate log q(z|x) - log p(z) at the reconstruction's z."""

    num_pseudo = 500

    def __init__(self) -> None:
        super().__init__()
        self.pseudo = nn.Parameter(0.05 + 0.01 * torch.randn(self.num_pseudo, 784))

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mu_k, logvar_k = self.encode(torch.clamp(self.pseudo, 0.0, 1.0))
        log_comp = _diag_gaussian_log_prob(z[:, None, :], mu_k[None], logvar_k[None])  # [N, K]
        log_prior = torch.logsumexp(log_comp, dim=1) - math.log(self.num_pseudo)
        return _diag_gaussian_log_prob(z, mu, logvar) - log_prior


MODELS = {"mlp": MLPVAE, "conv": ConvVAE, "gated": GatedVAE, "vampprior": VampPriorVAE}
# The Exemplar-VAE study's protocol (exemplar_fmnist.py): batch 100, Adam 5e-4, dynamic
# binarization, batch-mean loss with the KL weight warmed up linearly over 100 epochs of 500 steps.
EXEMPLAR = {"batch_size": 100, "lr": 5e-4, "warmup_steps": 50_000}


def negative_elbo(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Single-sample negative ELBO summed over the batch (nats)."""
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    logits = model.decode(z)
    rec = F.binary_cross_entropy_with_logits(logits, x.reshape(-1, 784), reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return rec + kl


def exemplar_loss(model: nn.Module, x: torch.Tensor, beta: float) -> torch.Tensor:
    """Batch mean of ``-log p(x|z) + beta * KL`` on a dynamically binarized batch."""
    x = torch.bernoulli(x.reshape(-1, 784))
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    rec = F.binary_cross_entropy_with_logits(model.decode(z), x, reduction="none").sum(-1)
    return torch.mean(rec) + beta * torch.mean(model.kl(mu, logvar, z))


# --------------------------------------------------------------------------- train / eval


def train(
    model: nn.Module,
    train_x: torch.Tensor,
    epochs: int,
    batch_size: int,
    max_steps: int | None,
    log: bool,
    test_x: torch.Tensor | None = None,
    exemplar: bool = False,
) -> tuple[list[float], list[int], list[float]]:
    """Trains in place; returns per-epoch training seconds, steps and, when ``test_x`` is given, the
    test negative ELBO after each epoch (pytorch/examples tests after every epoch). With
    ``exemplar``, the Exemplar-VAE study's protocol (``EXEMPLAR``, :func:`exemplar_loss`)."""
    lr = EXEMPLAR["lr"] if exemplar else 1e-3
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    step = 0
    steps_per_epoch = train_x.shape[0] // batch_size  # drop the last partial batch
    n_used = steps_per_epoch * batch_size
    seconds, steps, tests = [], [], []
    device = train_x.device
    for epoch in range(epochs):
        model.train()
        n_steps = steps_per_epoch if max_steps is None else min(steps_per_epoch, max_steps)
        total = 0.0
        t0 = time.perf_counter()
        perm = torch.randperm(train_x.shape[0], device=device)[:n_used]
        perm = perm.view(steps_per_epoch, batch_size)
        for i in range(n_steps):
            x = train_x[perm[i]]
            opt.zero_grad(set_to_none=True)
            if exemplar:
                beta = min(1.0, step / EXEMPLAR["warmup_steps"])
                loss = exemplar_loss(model, x, beta)
            else:
                loss = negative_elbo(model, x)
            step += 1
            loss.backward()
            opt.step()
            # On a GPU, .item() would wait for every step; sum there and read once per epoch.
            loss = loss * x.shape[0] if exemplar else loss  # summed over the batch, as logged
            total += loss.detach() if device.type == "cuda" else loss.item()
        total = float(total)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        seconds.append(dt)
        steps.append(n_steps)
        if test_x is not None:
            tests.append(test_nelbo(model, test_x))
        if log:
            print(
                f"epoch {epoch + 1}: {dt:.2f} s, {n_steps * batch_size / dt:.0f} images/s, "
                f"train nelbo {total / (n_steps * batch_size):.2f}",
                file=sys.stderr,
            )
    return seconds, steps, tests


@torch.no_grad()
def test_nelbo(model: nn.Module, test_x: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean single-sample negative ELBO over the test set (nats/image)."""
    model.eval()
    total = 0.0
    for i in range(0, test_x.shape[0], batch_size):
        x = test_x[i : i + batch_size]
        if isinstance(model, GatedVAE):  # binarized, as the study's models are trained
            total += exemplar_loss(model, x, 1.0).item() * x.shape[0]
        else:
            total += negative_elbo(model, x).item()
    return total / test_x.shape[0]


@torch.no_grad()
def iwae_nll(
    model: nn.Module, x: torch.Tensor, k: int, batch: int, chunk: int
) -> tuple[float, float]:
    """IWAE estimate of -log p(x) with k importance samples, mean over x (nats/image).

    Images go through in batches of `batch`; for each batch the k samples are drawn in chunks of
    `chunk` and their log-weights folded into a running logsumexp. Returns (nll, seconds).
    """
    model.eval()
    total = 0.0
    t0 = time.perf_counter()
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch].reshape(-1, 784)
        mu, logvar = model.encode(xb)
        std = torch.exp(0.5 * logvar)
        # log q(z|x) without its constant: -0.5 * eps^2 - 0.5 * logvar.
        acc = torch.full((xb.shape[0],), -math.inf, device=x.device)
        for j in range(0, k, chunk):
            c = min(chunk, k - j)
            eps = torch.randn(c, *mu.shape, device=x.device)
            z = mu + std * eps
            logits = model.decode(z)
            log_px_z = -F.binary_cross_entropy_with_logits(
                logits, xb.expand(c, -1, -1), reduction="none"
            ).sum(-1)
            # log p(z) - log q(z|x); the 2*pi constants cancel.
            log_pz_qz = (0.5 * (eps.pow(2) - z.pow(2)) + 0.5 * logvar).sum(-1)
            acc = torch.logaddexp(acc, torch.logsumexp(log_px_z + log_pz_qz, dim=0))
        total += (math.log(k) - acc).sum().item()
    return total / x.shape[0], time.perf_counter() - t0


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="mlp")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="cap steps per epoch (checks)")
    p.add_argument("--iwae-k", type=int, default=0, help="importance samples; 0 = no IWAE eval")
    p.add_argument("--iwae-num", type=int, default=IWAE_PROTOCOL_NUM, help="first N test images")
    p.add_argument("--iwae-batch", type=int, default=10, help="test images per IWAE batch")
    p.add_argument("--iwae-chunk", type=int, default=500, help="importance samples per chunk")
    p.add_argument("--save", type=Path, default=None, help="save the trained state_dict here")
    p.add_argument(
        "--test-every-epoch",
        action="store_true",
        help="test negative ELBO after every epoch, as pytorch/examples and jaxvae's configs do",
    )
    p.add_argument("--load", type=Path, default=None, help="load a state_dict (use --epochs 0)")
    p.add_argument("--json", action="store_true", help="one JSON line on stdout")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    p.add_argument(
        "--tf32",
        action="store_true",
        help="TensorFloat-32 matrix products on a GPU (JAX's default precision there)",
    )
    args = p.parse_args(argv)
    if args.tf32:
        torch.set_float32_matmul_precision("high")

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data_dir = Path(os.environ.get("JAXVAE_FASHION_MNIST_DIR", DEFAULT_DATA_DIR))
    device = torch.device(args.device)
    train_x, test_x = (t.to(device) for t in load_fashion_mnist(data_dir))

    model = MODELS[args.model]()
    if args.load is not None:
        model.load_state_dict(torch.load(args.load))
    model = model.to(device)
    n_params = sum(t.numel() for t in model.parameters())
    log = not args.json
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model}: "
        f"{n_params:,} parameters",
        file=sys.stderr,
    )

    exemplar = isinstance(model, GatedVAE)
    if exemplar:
        args.batch_size = EXEMPLAR["batch_size"]
    seconds, steps, tests = train(
        model,
        train_x,
        args.epochs,
        args.batch_size,
        args.max_steps,
        log,
        test_x if args.test_every_epoch else None,
        exemplar=exemplar,
    )
    if args.save is not None:
        torch.save(model.state_dict(), args.save)
    ips = [s * args.batch_size / dt for s, dt in zip(steps, seconds, strict=True)]
    nelbo = test_nelbo(model, test_x)
    result = {
        "framework": "torch",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "model": args.model,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "params": n_params,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "steps_per_epoch": steps,
        "epoch_seconds": [round(s, 4) for s in seconds],
        "images_per_sec": [round(v, 1) for v in ips],
        # Epochs after the first; with a single epoch, that epoch.
        "median_images_per_sec": round(statistics.median(ips[1:] or ips), 1) if ips else None,
        "test_nelbo": round(nelbo, 3),
    }
    if tests:
        result["test_nelbo_per_epoch"] = [round(v, 3) for v in tests]
    if log:
        print(f"test negative ELBO: {nelbo:.2f} nats/image", file=sys.stderr)

    if args.iwae_k > 0:
        num = min(args.iwae_num, test_x.shape[0])
        nll, secs = iwae_nll(model, test_x[:num], args.iwae_k, args.iwae_batch, args.iwae_chunk)
        scale = (IWAE_PROTOCOL_K * IWAE_PROTOCOL_NUM) / (args.iwae_k * num)
        result["iwae"] = {
            "k": args.iwae_k,
            "num_images": num,
            "batch": args.iwae_batch,
            "chunk": args.iwae_chunk,
            "nll": round(nll, 3),
            "seconds": round(secs, 4),
            "images_per_sec": round(num / secs, 3),
            "samples_per_sec": round(num * args.iwae_k / secs, 1),
            # Linear extrapolation to k=5000 on all 10k test images.
            "extrapolated_seconds_k5000_10k": round(secs * scale, 1),
        }
        if log:
            print(
                f"IWAE k={args.iwae_k} on {num} images: NLL {nll:.2f} nats/image, {secs:.2f} s, "
                f"{num * args.iwae_k / secs:.0f} samples/s "
                f"(k={IWAE_PROTOCOL_K} on {IWAE_PROTOCOL_NUM}: ~{secs * scale / 3600:.2f} h)",
                file=sys.stderr,
            )

    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
