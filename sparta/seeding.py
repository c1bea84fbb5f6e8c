"""Per-purpose seeds derived from one base seed, so any epoch can be replayed exactly on resume."""

from __future__ import annotations

import zlib

import numpy as np
import torch


def derive_seed(base: int, *keys: int | str) -> int:
    """A stable 63-bit seed for (base, *keys); strings are hashed deterministically."""
    words = [base] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


def generator(seed: int) -> torch.Generator:
    """A CPU generator (masks and offsets are drawn on CPU, then moved, for device-independent runs)."""
    return torch.Generator().manual_seed(seed)
