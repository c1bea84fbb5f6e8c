"""Safe, self-describing, atomically written checkpoints.

A checkpoint holds only tensors and primitives, so it loads with
``torch.load(weights_only=True)``: no pickled code is ever executed. It carries a
format version, the resolved config and its digest, the variables, grid and the
channel normalisation, so a model can be used (and checked) without its run directory.
"""

from __future__ import annotations

import os
import pickletools
import warnings
import zipfile
from collections import deque
from pathlib import Path
from typing import IO, Any

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


_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # as pickle protocols 0-2 name them


def _global_name(module: str, name: str) -> str:
    return f"{_PYTHON2_MODULES.get(module, module)}.{name}"


def _globals_in(stream: IO[bytes]) -> list[str]:
    """The ``module.name`` of every class or function the pickle(s) in ``stream`` would import when loaded.

    Read with :mod:`pickletools`, which only parses opcodes: nothing is imported or called. A legacy
    torch file is several pickles in a row (then raw storage bytes): reading goes on until the stream
    ends or stops parsing; a pickle cut off before its STOP counts for nothing. ``STACK_GLOBAL``
    (protocol 4+) takes its names from the two strings pushed before it, directly or through the memo;
    ``EXT*`` imports what the copyreg extension registry names.
    """
    names: list[str] = []
    with warnings.catch_warnings():  # pickletools warns about odd string escapes in corrupt bytes
        warnings.simplefilter("ignore", DeprecationWarning)
        _read_pickles(stream, names)
    return names


def _read_pickles(stream: IO[bytes], names: list[str]) -> None:
    pushed: deque = deque([None, None], maxlen=2)  # the last two pushes: strings, None for anything else
    memo: dict = {}
    try:
        while True:
            found: list[str] = []
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST"):
                    found.append(_global_name(*arg.split(" ", 1)))
                elif op.name == "STACK_GLOBAL":
                    found.append(_global_name(*(str(part) for part in pushed)))
                    pushed.append(None)
                elif op.name in ("EXT1", "EXT2", "EXT4"):
                    found.append(f"copyreg extension {arg}")
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1]
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = pushed[-1]
                elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(arg))
                else:
                    pushed.append(arg if isinstance(arg, str) else None)
            # counted only once the pickle reaches STOP: corrupt bytes that merely begin like a pickle (and
            # hold, by chance, a GLOBAL or EXT opcode) are not loadable, so they import nothing
            names += found
    except Exception:  # noqa: BLE001 - the end of the pickles, or of what parses: the complete ones count
        pass


def _unsafe_globals(path: Path) -> list[str]:
    """The classes and functions pickled in ``path`` beyond those torch's weights-only loader allows (tensors,
    their storages, plain containers): objects whose loading can run arbitrary code. Empty for a file that
    is no pickle at all."""
    allowed = torch._weights_only_unpickler._get_allowed_globals()  # private, in every torch SPARTA supports
    try:
        if zipfile.is_zipfile(path):
            found = []
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        with archive.open(member) as stream:
                            found += _globals_in(stream)
        else:
            with open(path, "rb") as stream:
                found = _globals_in(stream)
    except (OSError, zipfile.BadZipFile):
        return []
    return list(dict.fromkeys(name for name in found if name not in allowed))


def load_checkpoint(path: str | Path, expect_digest: str | None = None) -> dict[str, Any]:
    """Load a checkpoint without executing code; clear errors for every way it can be wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        with warnings.catch_warnings():  # a corrupt file gets one error below, not also torch's protocol warning
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle safely means "not usable"
        # torch's refusal reads differently for each kind of pickled object (an unsupported global, a blocked
        # module, an opcode it does not parse): the file's own pickle says whether it carries code
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise CheckpointError(f"'{path}' was not loaded: it contains pickled Python objects "
                                  f"({', '.join(unsafe[:3])}) that could run code when loaded, and SPARTA never "
                                  "writes such files; use a checkpoint written by `sparta train`, or train again"
                                  ) from None
        text = str(err)
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
