"""Which days form a contrastive batch, and the datasets that read days from a prepared store.

Day indices ``t`` are relative to the start of a split. The batch sampler decides the days and
their positive offsets ``delta`` (paper section 3.4.1; reference-notes.md sections 3-4);
the datasets only read and normalise, so all sampling randomness lives in one seeded place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sparta import grids
from sparta.config import SamplerConfig
from sparta.data.store import DataError, Store
from sparta.grids import Fields

log = logging.getLogger(__name__)

FALLBACK_REACH = 0.9  # short-split rule: fall back to days >= 90% of the anchor's farthest reach


def delta_probabilities(max_delta: int, decay: float) -> np.ndarray:
    """``p(d) ∝ exp(-decay * d)`` for ``d = 1..max_delta``: nearer positives are likelier."""
    weights = np.exp(-decay * np.arange(1, max_delta + 1))
    return weights / weights.sum()


def _draw_in_band(anchors: np.ndarray, lo: int, hi: int, dmin: np.ndarray | int, dmax: np.ndarray | int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per anchor, a day uniform among ``[lo, hi)`` at distance ``dmin..dmax`` on either side.

    Returns the picks and a flag for anchors without any candidate (their pick is meaningless).
    """
    left_lo, left_hi = np.maximum(lo, anchors - dmax), anchors - dmin
    right_lo, right_hi = anchors + dmin, np.minimum(hi - 1, anchors + dmax)
    n_left = np.clip(left_hi - left_lo + 1, 0, None)
    n_right = np.clip(right_hi - right_lo + 1, 0, None)
    u = np.floor(rng.random(anchors.shape) * (n_left + n_right)).astype(np.int64)
    return np.where(u < n_left, left_lo + u, right_lo + u - n_left), n_left + n_right == 0


def _reach(anchors: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Largest distance from each anchor to a day in ``[lo, hi)``."""
    return np.maximum(anchors - lo, hi - 1 - anchors)


def _draw_negatives(anchors: np.ndarray, lo: int, hi: int, dmin: int, dmax: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Negatives at distance ``dmin..dmax``; anchors with none get one from their farthest days."""
    pick, empty = _draw_in_band(anchors, lo, hi, dmin, dmax, rng)
    if empty.any():
        reach = _reach(anchors, lo, hi)
        far, _ = _draw_in_band(anchors, lo, hi, np.maximum(1, np.ceil(FALLBACK_REACH * reach)).astype(np.int64),
                               reach, rng)
        pick = np.where(empty, far, pick)
    return pick


class ContrastiveBatchSampler(Sampler[list[tuple[int, int]]]):
    """A ``batch_sampler`` yielding lists of ``(t, delta)``, ``t`` relative to the split start.

    Anchors are the days ``t`` in ``[max_delta, n_steps - max_delta)`` (so ``t ± delta`` exist),
    each used once per epoch in a permutation fixed by ``(seed, epoch)``. Without hard negatives a
    batch is ``batch_size`` anchors. With them it is ``batch_size // 3`` triplets ordered
    ``[anchor, soft, hard, anchor, soft, hard, ...]``: the hard negative is uniform among valid
    days ``hard_min..hard_max`` away (either side), the soft one uniform among valid days at least
    ``soft_min`` away. Every member, negatives included, gets its own ``delta`` from
    :func:`delta_probabilities` and acts as an ordinary batch member with its own positives.

    Short-split rule: the reference crashes when no valid day is ``soft_min`` away (a train split
    of about 2010 days or fewer). Here an anchor without any candidate in its band (soft or hard)
    draws uniformly from the valid days at least ``ceil(0.9 * reach)`` away, ``reach`` being its
    largest achievable distance: the farthest tenth of what the split offers that anchor. A
    warning at construction says how many anchors this affects.

    With ``world_size > 1`` the ranks share the permutation and rank ``r`` takes every
    ``world_size``-th batch, so their anchors are disjoint; every rank gets the same number of
    batches (leftover anchors that do not fill a batch on every rank are dropped), at most
    ``max_batches``.
    """

    def __init__(self, n_steps: int, batch_size: int, cfg: SamplerConfig, seed: int, hard_negatives: bool,
                 max_batches: int | None = None, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.cfg = cfg
        self.seed = seed
        self.hard_negatives = hard_negatives
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.lo, self.hi = cfg.max_delta, n_steps - cfg.max_delta
        self.per_batch = batch_size // 3 if hard_negatives else batch_size
        if self.per_batch < 1:
            raise ValueError(f"batch_size {batch_size} holds no (anchor, soft, hard) triplet; use a multiple of 3")
        n_valid = max(0, self.hi - self.lo)
        n_batches = n_valid // (self.per_batch * world_size)
        if n_batches < 1:
            raise DataError(
                f"a split of {n_steps} days has {n_valid} anchor days (t ± {cfg.max_delta} must exist); "
                f"one batch of {self.per_batch} anchors on each of {world_size} process(es) needs "
                f"{self.per_batch * world_size}: use a longer split or a smaller train.batch_size")
        self.n_batches = n_batches if max_batches is None else min(n_batches, max_batches)
        self.probs = delta_probabilities(cfg.max_delta, cfg.delta_decay)
        if hard_negatives:
            self._warn_short_split(np.arange(self.lo, self.hi))

    def _warn_short_split(self, anchors: np.ndarray) -> None:
        reach = _reach(anchors, self.lo, self.hi)
        no_soft = int((reach < self.cfg.soft_min).sum())
        no_hard = int(((anchors - self.cfg.hard_min < self.lo) & (anchors + self.cfg.hard_min >= self.hi)).sum())
        for count, what in ((no_soft, f"soft negative >= {self.cfg.soft_min}"),
                            (no_hard, f"hard negative {self.cfg.hard_min}..{self.cfg.hard_max}")):
            if count:
                log.warning("split too short: %d of %d anchor days have no %s days away; they draw it from "
                            "their farthest days (>= %.0f%% of their reach)", count, anchors.size, what,
                            100 * FALLBACK_REACH)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle: the order is a pure function of ``(seed, epoch)``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        # Draws cover every anchor whatever world_size and max_batches are, so batch k is the same
        # on any rank layout and a capped epoch is a prefix of the full one.
        rng = np.random.default_rng([self.seed, self.epoch])
        cfg = self.cfg
        anchors = self.lo + rng.permutation(self.hi - self.lo)
        if self.hard_negatives:
            soft = _draw_negatives(anchors, self.lo, self.hi, cfg.soft_min, self.hi, rng)
            hard = _draw_negatives(anchors, self.lo, self.hi, cfg.hard_min, cfg.hard_max, rng)
            members = np.stack([anchors, soft, hard], axis=-1)
        else:
            members = anchors[:, None]
        deltas = rng.choice(np.arange(1, cfg.max_delta + 1), size=members.shape, p=self.probs)
        n_global = self.n_batches * self.world_size
        shape = (n_global, members.shape[1] * self.per_batch)
        members = members[: n_global * self.per_batch].reshape(shape)[self.rank :: self.world_size]
        deltas = deltas[: n_global * self.per_batch].reshape(shape)[self.rank :: self.world_size]
        for days, ds in zip(members.tolist(), deltas.tolist()):
            yield list(zip(days, ds))


class _SplitDataset(Dataset):
    """Reads normalised days of one split lazily from the store's memmap."""

    def __init__(self, store: Store, split: str):
        self.store = store
        self.start, stop = store.split_range(split)
        self.n_steps = stop - self.start

    def __len__(self) -> int:
        """Days in the split (the ``n_steps`` that :class:`ContrastiveBatchSampler` expects)."""
        return self.n_steps

    def _read(self, days: int | np.ndarray) -> Fields:
        """Split-relative day(s) -> float32 z-scored tensor (one per grid for a mixed store)."""
        normalised = self.store.normalise(self.store.read(self.start + days))
        return grids.each(lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), normalised)

    def _check(self, first: int, last: int) -> None:
        if first < 0 or last >= self.n_steps:
            raise IndexError(f"days {first}..{last} are outside the split's 0..{self.n_steps - 1}")


class ContrastiveDataset(_SplitDataset):
    """``(t, delta)`` -> ``"minus"``, ``"anchor"``, ``"plus"`` = days t-delta, t, t+delta (C, H, W), ``"t"``, ``"delta"``."""

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor | int]:
        t, delta = item
        self._check(t - delta, t + delta)
        days = self._read(np.array([t - delta, t, t + delta]))
        minus, anchor, plus = (grids.take(days, i) for i in range(3))
        return {"minus": minus, "anchor": anchor, "plus": plus, "t": t, "delta": delta}


class FieldDataset(_SplitDataset):
    """Day ``t`` of the split -> ``{"x": (C, H, W), "season": DJF=0..SON=3, "t": t}``."""

    def __getitem__(self, t: int) -> dict[str, torch.Tensor | int]:
        self._check(t, t)
        return {"x": self._read(t), "season": int(self.store.seasons[self.start + t]), "t": t}


class WindowDataset(_SplitDataset):
    """Forecast windows: window ``i`` starts at ``i * stride`` (the reference's "S").

    ``context`` is days ``[start, start + lookback)`` and ``target`` the next ``horizon`` days,
    shapes ``(lookback | horizon, C, H, W)``; both come from one read of the memmap.
    """

    def __init__(self, store: Store, split: str, lookback: int, stride: int, horizon: int):
        super().__init__(store, split)
        if min(lookback, stride, horizon) < 1:
            raise ValueError(f"lookback ({lookback}), stride ({stride}) and horizon ({horizon}) must be >= 1")
        self.lookback, self.stride, self.horizon = lookback, stride, horizon
        if self.n_steps < lookback + horizon:
            raise DataError(f"the {split} split has {self.n_steps} days; one window of look-back {lookback} "
                            f"and horizon {horizon} needs {lookback + horizon}: use a longer split or shorter windows")
        self.n_windows = (self.n_steps - lookback - horizon) // stride + 1

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= i < self.n_windows:
            raise IndexError(f"window {i} is outside 0..{self.n_windows - 1}")
        start = i * self.stride
        block = self._read(np.arange(start, start + self.lookback + self.horizon))
        return {"context": grids.take(block, slice(None, self.lookback)),
                "target": grids.take(block, slice(self.lookback, None)), "start": start}
