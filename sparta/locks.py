"""One writer per output directory.

``sparta train`` (its run directory, new or resumed), ``sparta evaluate`` (the run it scores) and
``sparta reproduce`` (its ``--out`` folder, and each variant's run in it) hold ``DIR/.sparta-lock``
while they write there. A second process asking for the same directory stops at once with one line
naming the holder: its pid, host, start time and command.

The lock is a POSIX record lock (``fcntl.lockf``) on that file, which the kernel drops when its
process ends, however it ends, so a crashed run never leaves a lock that blocks: the next process
takes the file over (and says whose it was). Record locks are per process, so the DataLoader workers
a run forks do not hold it, and they work on network file systems (NFS). Where the file system has no
locks at all, the recorded pid decides instead: a lock whose process is no longer alive on this host
is stale and taken over.

Torch-free, like :mod:`sparta.outputs`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sparta.errors import UserError
from sparta.outputs import check_output_dir

log = logging.getLogger(__name__)

LOCK_NAME = ".sparta-lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}  # a file system without record locks


class LockedError(UserError, RuntimeError):
    """Another process is writing the directory (or a file in its place is not SPARTA's lock)."""


def _record(fd: int) -> dict | None:
    """The holder recorded in the lock file, read through ``fd`` (closing any other descriptor of the file
    would drop this process's record lock); None when it is empty or half-written (its holder is starting),
    or not a SPARTA lock."""
    try:
        record = json.loads(os.pread(fd, 65536, 0))
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("sparta") == "lock" else None


def _holder(record: dict | None) -> str:
    if record is None:
        return "a process that is starting"
    return f"pid {record['pid']} on host {record['host']}, since {record['started']}: {record['command']}"


def _alive_here(record: dict) -> bool:
    """Whether the recorded process still runs; True when it ran on another host (it cannot be checked)."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file behind ``fd`` (a holder removes the file as it releases it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _lock(fd: int, path: Path, option: str) -> None:
    """Take the record lock on ``fd``, or raise :class:`LockedError` naming its holder."""
    busy = (f"'{path.parent}' is in use by another SPARTA process ({{}}); wait for it to finish, or choose "
            f"another {option}")
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EAGAIN):
            raise LockedError(busy.format(_holder(_record(fd)))) from None
        if err.errno not in _NO_LOCKS:
            raise
        record = _record(fd)  # no record locks on this file system: the recorded pid decides
        if record is not None and record["pid"] != os.getpid() and _alive_here(record):
            raise LockedError(busy.format(_holder(record)) + f" (if that process no longer runs, delete '{path}')"
                              ) from None


def _acquire(path: Path, option: str) -> int:
    """An open descriptor of ``path`` holding its lock, with this process recorded in the file."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd, path, option)
            if not _same_file(fd, path):  # its holder removed it between our open and lock: lock the new one
                os.close(fd)
                continue
            stale = _record(fd)
            if stale is None and os.fstat(fd).st_size:
                raise LockedError(f"'{path}' exists and is not a SPARTA lock file; SPARTA never overwrites files "
                                  "it did not write: move it away")
            if stale is not None:
                log.info("'%s': taking over the lock of %s, which no longer runs", path.parent, _holder(stale))
            mine = {"sparta": "lock", "pid": os.getpid(), "host": socket.gethostname(),
                    "started": datetime.now().isoformat(timespec="seconds"),
                    "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(mine).encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise


@contextmanager
def lock_directory(directory: str | Path, option: str = "--out") -> Iterator[Path]:
    """Hold ``directory``'s lock (creating the directory) for the ``with`` block; another process asking for it
    meanwhile gets a :class:`LockedError` naming this one. ``option``: how the user names the directory."""
    directory = check_output_dir(directory, option)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = _acquire(path, option)
    try:
        yield directory
    finally:
        if _same_file(fd, path):  # removed while still locked: a process that opened it retries on a new file
            path.unlink()
        os.close(fd)
