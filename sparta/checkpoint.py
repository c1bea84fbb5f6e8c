"""Safe, self-describing, atomically written checkpoints.

A checkpoint holds only tensors and primitives, so it loads with
``torch.load(weights_only=True)``: no pickled code is ever executed. It carries a
format version, the resolved config and its digest, the variables, grid and the
channel normalisation, so a model can be used (and checked) without its run directory.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from sparta import __version__
from sparta.errors import UserError

CHECKPOINT_FORMAT = 1
_MAGIC = "sparta-checkpoint"


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, corrupt, foreign or incompatible; the message says which."""


def atomic_write_bytes(path: Path, write) -> None:
    """Write via a temporary file + fsync + rename (:func:`sparta.outputs.atomic_write`), so a crash never leaves
    a half-written file; ``write(fh)`` writes to a binary file handle."""
    from sparta.outputs import atomic_write

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            write(fh)

    atomic_write(path, to_file, path.with_name(f".{path.name}.tmp-{os.getpid()}"), durable=True)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save ``payload`` (tensors/primitives only) with the format marker and package version."""
    data = {"magic": _MAGIC, "format": CHECKPOINT_FORMAT, "sparta_version": __version__, **payload}
    atomic_write_bytes(Path(path), lambda fh: torch.save(data, fh))


def load_checkpoint(path: str | Path, expect_digest: str | None = None) -> dict[str, Any]:
    """Load a checkpoint without executing code; clear errors for every way it can be wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle safely means "not usable"
        text = str(err)
        if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in text:
            # The safe loader met a Python object other than tensors and primitives (a class or function to
            # call while loading): such a file can run code when loaded, so it is refused and never loaded.
            found = re.search(r"GLOBAL ([\w.]+)", text)
            what = f" ({found[1]})" if found else ""
            raise CheckpointError(f"'{path}' is unsafe: besides tensors and numbers it holds pickled Python "
                                  f"objects{what}, which could run code when loaded, so SPARTA refuses to load it; "
                                  "SPARTA checkpoints never contain any: use a checkpoint written by "
                                  "`sparta train`, or train again") from None
        first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else type(err).__name__
        raise CheckpointError(f"'{path}' is truncated, corrupt or not a SPARTA checkpoint ({first[:160]})") from None
    if not isinstance(data, dict) or data.get("magic") != _MAGIC:
        raise CheckpointError(f"'{path}' is not a SPARTA checkpoint")
    if data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint '{path}' has format {data.get('format')}; this version of sparta reads "
                              f"format {CHECKPOINT_FORMAT}")
    if expect_digest is not None and data.get("config_digest") != expect_digest:
        raise CheckpointError(f"checkpoint '{path}' was made with another model/config "
                              f"(digest {data.get('config_digest')} != {expect_digest})")
    return data
