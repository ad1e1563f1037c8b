"""Wall and CPU time of each disentanglement metric at the study's protocol, on host CPUs.

The data is dSprites-shaped (factors of sizes 3, 6, 40, 32, 32) but synthetic and cheap, and the
representation is 10-dimensional (5 dimensions follow the factors with noise of std 0.05 on a
[0, 1] scale, 5 are noise), so the times are the metrics' own (sampling loops and scikit-learn),
not an encoder's or a renderer's.

    PYTHONPATH=src nice -n 10 python benchmarks/disentanglement_metrics.py [metric ...]
        [--dci-boosting numpy|sklearn] [--dci-points N]

``--dci-boosting`` picks DCI's classifiers (the numpy re-implementation by default, or
scikit-learn's); ``--dci-points N`` fits DCI on N training and N // 2 test points instead of the
protocol's 10,000 and 5,000.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jaxvae import disentanglement as dis

SIZES = np.array([3, 6, 40, 32, 32])


class SyntheticSprites:
    factor_sizes = tuple(int(s) for s in SIZES)
    factor_names = ("shape", "scale", "orientation", "pos_x", "pos_y")

    def sample_factors(self, num, rng):
        return rng.integers(0, SIZES, size=(num, SIZES.size))

    def sample_observations_from_factors(self, factors, rng):
        unit = factors / (SIZES - 1.0) + 0.05 * rng.normal(size=factors.shape)
        noise = rng.normal(size=(factors.shape[0], 5))
        return np.concatenate([unit, noise], 1).reshape(-1, 1, 1, 10).astype(np.float32)


def representation(x):
    return x.reshape(x.shape[0], 10) + 0.05


def posterior(x):
    z = representation(x)
    return z, np.full_like(z, -2.0)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("metrics", nargs="*", default=list(dis.METRICS))
    parser.add_argument("--dci-boosting", default="numpy", choices=dis.dci.BOOSTING)
    parser.add_argument("--dci-points", type=int, default=0)
    args = parser.parse_args(argv)
    dci = {"boosting": args.dci_boosting}
    if args.dci_points:
        dci |= {"num_train": args.dci_points, "num_test": args.dci_points // 2}
    data = SyntheticSprites()
    for name in args.metrics:
        start, cpu = time.perf_counter(), time.process_time()
        out = dis.evaluate_all(
            data, representation, posterior, 0, metrics=[name], protocol={"dci": dci}
        )
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"{name:24s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  {out.scores}", flush=True)


if __name__ == "__main__":
    main()
