"""Encode each combination once: a table of the codes of every factor combination, looked up.

At the study's protocol BetaVAE draws 1.92 million observations and FactorVAE 970,000, most of
them repeats of dSprites' 737,280 combinations. When the data have one fixed observation per
combination (:func:`jaxvae.data.ground_truth.distinct_combinations`) and the representation
is a function of each observation alone, a code depends on its combination only; so the codes
of every combination can be computed once, in batches, and each metric look up those of the
combinations it draws. :class:`CodeTable` is that table and, for the metrics, a ground-truth
dataset whose observation of a combination is its row in the table, with :meth:`CodeTable.codes`
the representation that reads the rows: a metric given the pair draws exactly the factors it
draws from the data itself (the same generator, the same calls) and gets the same codes.

"A function of each observation alone" holds bit for bit only at a fixed batch shape: an XLA
convolution on a CPU rounds differently at batch 16 than at batch 1,024 (in the last bits).
:func:`fixed_batches` makes any representation call its function on exactly ``batch``
observations at a time, which ``evaluate_all`` does on both paths, so the table changes no
number.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxvae.data.ground_truth import factors_to_index, index_to_factors, sorted_positions
from jaxvae.disentanglement import ground_truth

RENDER_CHUNK = 1024  # combinations rendered (and held) at a time while the table is built


def _as_tuple(out: Any) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(a) for a in out) if isinstance(out, tuple) else (np.asarray(out),)


def _like(parts: tuple[np.ndarray, ...], fn_out: Any) -> Any:
    return parts if isinstance(fn_out, tuple) else parts[0]


def fixed_batches(fn: Callable[[np.ndarray], Any], batch: int) -> Callable[[np.ndarray], Any]:
    """``fn`` called on exactly ``batch`` observations at a time.

    The observations are cut into batches of ``batch``; the last is padded with copies of its
    last observation and the padding's outputs dropped. ``fn`` may return an array ``[n, ...]``
    or a tuple of them (a posterior's means and log-variances); the result is the same kind, the
    parts concatenated. For a function whose rows depend on their own observation only at a
    fixed batch shape (an XLA network), each output row is then a function of its observation.
    """
    ground_truth.check_positive(batch=batch)

    def call(x: np.ndarray) -> Any:
        x = np.asarray(x)
        pieces, first = [], None
        for start in range(0, x.shape[0], batch):
            part = x[start : start + batch]
            n = part.shape[0]
            if n < batch:
                part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
            out = fn(part)
            first = out if first is None else first
            pieces.append(tuple(a[:n] for a in _as_tuple(out)))
        if first is None:  # no observations: the function's own answer
            return fn(x)
        return _like(tuple(np.concatenate(p) for p in zip(*pieces, strict=True)), first)

    return call


class CodeTable:
    """The codes of every combination of ``data``, as a ground-truth dataset of table rows.

    ``sample_factors`` is ``data``'s; ``sample_observations_from_factors`` gives each
    combination's row (int64 ``[n]``, nothing drawn from ``rng``, as ``data`` promised);
    :meth:`codes` gives those rows' codes (what ``fn`` gave: an array, or a tuple of arrays).

    Args:
      data: the ground-truth data.
      fn: the representation (observations -> codes), called on the observations of
        :data:`RENDER_CHUNK` combinations at a time; the next chunk is rendered meanwhile.
      combinations: ``distinct_combinations(data)``: sorted mixed-radix indices ``[M]``.

    Memory: the table (``M x D``, dSprites' 737,280 x 10 float32 codes: 29 MB) and two chunks
    of observations; never all the observations.
    """

    def __init__(self, data: ground_truth.GroundTruthData, fn: Callable, combinations: np.ndarray):
        self.factor_sizes = tuple(int(s) for s in data.factor_sizes)
        self.factor_names = tuple(data.factor_names)
        self._data = data
        self.combinations = np.asarray(combinations, np.int64)
        self._tables, self._kind = self._encode(fn)

    def _encode(self, fn: Callable) -> tuple[tuple[np.ndarray, ...], Any]:
        rng = np.random.default_rng(0)  # the data promise not to draw from it

        def render(start: int) -> np.ndarray:
            index = self.combinations[start : start + RENDER_CHUNK]
            factors = index_to_factors(index, self.factor_sizes)
            return self._data.sample_observations_from_factors(factors, rng)

        tables, kind = None, None
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(render, 0)
            for start in range(0, self.combinations.size, RENDER_CHUNK):
                observations = pending.result()
                if start + RENDER_CHUNK < self.combinations.size:
                    pending = pool.submit(render, start + RENDER_CHUNK)
                out = fn(observations)
                parts = _as_tuple(out)
                if any(p.shape[0] != observations.shape[0] for p in parts):
                    raise ValueError(
                        f"the representation returned shapes {[p.shape for p in parts]} for "
                        f"{observations.shape[0]} observations; expected [{observations.shape[0]}, D]"
                    )
                if tables is None:
                    kind = out
                    size = self.combinations.size
                    tables = tuple(np.empty((size, *p.shape[1:]), p.dtype) for p in parts)
                for table, part in zip(tables, parts, strict=True):
                    table[start : start + part.shape[0]] = part
        return tables, kind

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """The data's own ``sample_factors``: the same draws."""
        return self._data.sample_factors(num, rng)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """The table row of each combination: int64 ``[n]`` (``rng`` unused)."""
        del rng
        keys = factors_to_index(factors, self.factor_sizes)
        where = f"one of the {self.combinations.size} combinations of the table"
        return sorted_positions(self.combinations, keys, factors, where)

    def codes(self, rows: np.ndarray) -> Any:
        """The codes of table rows (as the representation returned them)."""
        return _like(tuple(t[rows] for t in self._tables), self._kind)

    @property
    def nbytes(self) -> int:
        """Bytes held by the codes."""
        return sum(t.nbytes for t in self._tables)
