"""Where SPARTA writes: checks of output paths, and what SPARTA may replace.

Two rules hold for every command:

* an output path that cannot be written (an existing file where a directory is needed, a parent
  that is a file, a read-only or unwritable directory, a full disk) stops the command with one
  line naming the path and the fix, before any work when it can be told in advance
  (:func:`check_output_dir`, :func:`check_output_file`) and otherwise when the write fails
  (:func:`os_error_message` turns the ``OSError`` into that line);
* nothing SPARTA did not write is deleted or overwritten: a directory is replaced only when it is
  a SPARTA run or store, and then only the entries SPARTA writes there
  (:func:`foreign_entries` lists the others, which make the replacement refuse).

Torch-free, so the data layer can use it.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sparta.errors import UserError


class OutputError(UserError, ValueError):
    """An output path cannot be written, or would replace files SPARTA did not write."""


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _check_writable_ancestor(path: Path, option: str) -> None:
    """``path`` (not yet existing, or an existing directory) can be created/written into."""
    base = _nearest_existing(path)
    if not base.is_dir():
        raise OutputError(f"cannot create '{path}': '{base}' exists and is a file, not a directory; "
                          f"choose another {option}")
    if _read_only_fs(base):
        raise OutputError(f"cannot write '{path}': '{base}' is on a read-only file system; "
                          f"choose {option} on a writable disk")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write '{path}': '{base}' is not writable (permission denied); "
                          f"choose a writable {option} or fix the permissions of '{base}'")


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """Refuse, with the fix, an output directory that cannot be created or written into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"'{path}' exists and is a file; {option} must be a directory: choose a new or empty "
                          f"directory for {option}")
    _check_writable_ancestor(path, option)
    return path


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """Refuse, with the fix, an output file (or ``.zarr`` directory) whose place cannot be written."""
    path = Path(path)
    if path.exists() and path.suffix != ".zarr" and path.is_dir():
        raise OutputError(f"'{path}' exists and is a directory; {option} must be a file path: choose another "
                          f"{option}")
    _check_writable_ancestor(path.parent, option)
    return path


def check_free_space(path: str | Path, needed: int, option: str = "--out") -> None:
    """Refuse to start writing ``needed`` bytes under ``path`` when its disk has less free."""
    base = _nearest_existing(Path(path))
    try:
        free = shutil.disk_usage(base).free
    except OSError:
        return
    if free < needed:
        raise OutputError(f"not enough disk space for '{path}': it needs {needed / 1e9:.2f} GB, '{base}' has "
                          f"{free / 1e9:.2f} GB free; free some space or choose {option} on another disk")


def os_error_message(err: OSError) -> str:
    """One line for an ``OSError`` met while reading or writing a path: what happened to which path, and the fix."""
    path = err.filename if err.filename is not None else "?"
    code = err.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"no space left on the disk while writing '{path}'; free some space or write to another disk"
    if code == errno.EROFS:
        return f"cannot write '{path}': it is on a read-only file system; choose an output on a writable disk"
    if code in (errno.EACCES, errno.EPERM):
        return (f"permission denied for '{path}'; choose a path you can write (and read), or fix its "
                "permissions")
    if code == errno.EEXIST:
        return f"'{path}' already exists (as a file); choose another output path or move it away"
    if code == errno.ENOTDIR:
        return f"'{path}': a part of this path is a file, not a directory; choose another path"
    if code == errno.EISDIR:
        return f"'{path}' is a directory where a file is needed; choose another path"
    if code == errno.ENOENT:
        return f"'{path}' does not exist (or its parent directory is missing); check the path"
    return f"cannot access '{path}': {err.strerror or err}; check the path"


def foreign_entries(path: Path, owned: Callable[[Path], bool]) -> list[str]:
    """Entries under ``path`` (relative names) that ``owned`` does not claim; owned directories are descended."""
    found = []
    for entry in sorted(path.iterdir()):
        if not owned(entry):
            found.append(entry.name + ("/" if entry.is_dir() else ""))
        elif entry.is_dir() and not entry.is_symlink():
            found += [f"{entry.name}/{name}" for name in foreign_entries(entry, owned)]
    return found


def listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def remove_owned(path: Path, owned: Callable[[Path], bool]) -> None:
    """Delete the entries of ``path`` that ``owned`` claims (callers first make sure there are no others)."""
    for entry in path.iterdir():
        if not owned(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            remove_owned(entry, owned)
            try:
                entry.rmdir()
            except OSError:
                pass  # something foreign inside: it stays, with its directory
        else:
            entry.unlink()


#: The report files SPARTA writes into a reproduce directory, and how each of them begins.
REPORT_FILES = {"report.md": "# SPARTA reproduction report", "report.html": "<!doctype html><html><head><meta "
                "charset='utf-8'><title>SPARTA report</title>"}


def check_report_outputs(out: str | Path) -> None:
    """Refuse to write the report into ``out`` when that would replace a report.md/.html SPARTA did not write."""
    out = check_output_dir(out)
    for name, start in REPORT_FILES.items():
        path = out / name
        if path.is_dir():
            raise OutputError(f"'{path}' is a directory; the report needs that name: move it away or choose "
                              "another directory")
        if path.exists():
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    head = fh.read(len(start))
            except OSError as err:
                raise OutputError(os_error_message(err)) from None
            if head != start:
                raise OutputError(f"'{path}' exists and was not written by SPARTA; the report would replace it: "
                                  "move it away or choose another directory")


def atomic_write(path: Path, write: Callable[[Path], None], tmp: Path | None = None, durable: bool = False) -> None:
    """Write ``path`` (a file or a directory such as a zarr store) so that it is never seen half-written.

    ``write(tmp)`` writes a temporary sibling (``tmp``, by default ``.<name>.partial-<pid>``), which then
    replaces ``path``; if ``write`` fails (a full disk, Ctrl-C) the temporary is removed. ``durable``:
    fsync the file and its directory, so the rename survives a power cut (checkpoints).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp or path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    if path.is_dir() and not tmp.is_file():
        shutil.rmtree(path)
    elif path.is_dir():
        raise OutputError(f"'{path}' is a directory; it cannot be replaced by a file")
    os.replace(tmp, path)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
