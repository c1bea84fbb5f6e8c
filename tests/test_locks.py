"""One writer per output directory (sparta.locks): a second `sparta train` / `reproduce` / `evaluate` of the same
directory is refused at once naming the first, and a lock left by a killed process does not block."""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparta import locks
from sparta.checkpoint import load_checkpoint
from sparta.cli import app
from sparta.locks import LOCK_NAME, LockedError, lock_directory
from cli_checks import cli_fails

CLI = [sys.executable, "-c", "from sparta.cli import app; app()"]
HOLDER = ("import sys; from sparta.locks import lock_directory\n"
          "with lock_directory(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()")


def _holder(directory: Path) -> subprocess.Popen:
    """A process holding ``directory``'s lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_the_lock_names_its_holder_and_goes_with_it(tmp_path):
    with lock_directory(tmp_path / "run") as directory:
        record = json.loads((directory / LOCK_NAME).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["command"] == shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    assert list((tmp_path / "run").iterdir()) == []


def test_a_second_train_of_the_same_run_is_refused_and_the_first_finishes_intact(tmp_path, micro_store):
    run = tmp_path / "run"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([*CLI, "train", "--preset", "micro", "--out", str(run), "--no-progress",
                                  f"data.store={micro_store.path}", "train.epochs_pretrain=2"],
                                 stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    while not (run / LOCK_NAME).is_file() or str(first.pid) not in (run / LOCK_NAME).read_text():
        assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
        time.sleep(0.05)
    holder = f"pid {first.pid} on host {socket.gethostname()}"
    for args in (["train", "--preset", "micro", "--out", run, "--overwrite", f"data.store={micro_store.path}"],
                 ["train", "--resume", run],
                 ["evaluate", run, "--no-progress"]):
        cli_fails(args, f"'{run}' is in use by another SPARTA process ({holder}", f"--out {run}", "wait for it to "
               "finish, or choose another")
    assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()
    assert (run / "COMPLETE").is_file() and not (run / LOCK_NAME).exists()
    assert len(load_checkpoint(run / "checkpoints" / "last.pt")["history"]) == 4  # 2 + 1 + 1 epochs, all its own


def test_a_second_reproduce_into_the_same_folder_is_refused_at_once(tmp_path, micro_store):
    grid = tmp_path / "grid"
    holder = _holder(grid)
    try:
        cli_fails(["reproduce", "--preset", "micro", "--only", "pca", "--out", grid, "--no-progress",
                f"data.store={micro_store.path}"],
               f"'{grid}' is in use by another SPARTA process (pid {holder.pid} on host {socket.gethostname()}",
               f"-c {grid}")  # its command: python -c ... DIR
        assert [p.name for p in grid.iterdir()] == [LOCK_NAME]  # nothing trained or written
    finally:
        holder.stdin.close()
        holder.wait()
    assert list(grid.iterdir()) == []


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, micro_store, caplog):
    caplog.set_level(logging.INFO, logger="sparta.locks")
    run = tmp_path / "run"
    holder = _holder(run)
    holder.kill()
    holder.wait()
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == holder.pid  # left behind, but no longer locked
    result = CliRunner().invoke(app, ["train", "--preset", "micro", "--model", "pca", "--out", str(run),
                                      f"data.store={micro_store.path}"])
    assert result.exit_code == 0, result.output
    assert f"taking over the lock of pid {holder.pid} on host {socket.gethostname()}" in caplog.text
    assert (run / "COMPLETE").is_file() and not (run / LOCK_NAME).exists()


def test_a_file_in_the_locks_place_that_sparta_did_not_write_is_left_alone(tmp_path):
    (tmp_path / LOCK_NAME).write_text("my notes")
    with pytest.raises(LockedError, match="is not a SPARTA lock file"):
        with lock_directory(tmp_path):
            pass
    assert (tmp_path / LOCK_NAME).read_text() == "my notes"


@pytest.fixture
def no_record_locks(monkeypatch):
    """A file system without record locks (some network file systems): lockf fails with ENOLCK."""
    def lockf(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(locks.fcntl, "lockf", lockf)


def _write_record(directory: Path, pid: int, host: str) -> None:
    record = {"sparta": "lock", "pid": pid, "host": host, "started": "2026-01-01T00:00:00", "command": "sparta train"}
    (directory / LOCK_NAME).write_text(json.dumps(record))


def test_without_record_locks_the_recorded_pid_decides(tmp_path, no_record_locks):
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        _write_record(tmp_path, holder.pid, socket.gethostname())  # alive on this host: refused
        with pytest.raises(LockedError, match=f"pid {holder.pid} on host .*delete '{tmp_path / LOCK_NAME}'"):
            with lock_directory(tmp_path):
                pass
    finally:
        holder.stdin.close()
        holder.wait()
    _write_record(tmp_path, holder.pid, "elsewhere")  # another host's process cannot be checked: refused
    with pytest.raises(LockedError, match="on host elsewhere"):
        with lock_directory(tmp_path):
            pass
    _write_record(tmp_path, holder.pid, socket.gethostname())  # ended: stale, taken over
    with lock_directory(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()
