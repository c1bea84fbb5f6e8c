"""Reliability: interruption and resume, and one clear error (exit status 2) for each kind of bad input."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from sparta.checkpoint import load_checkpoint
from sparta.cli import app
from sparta.config import Config, load_config
from sparta.data import open_or_prepare
from sparta.data.store import PreparedStore
from sparta.data.synthetic import synthetic_era5
from sparta.runs import Run
from sparta.training import Step, Trainer, TrainingInterrupted, _on_stop_signals

EPOCHS = ["train.epochs_pretrain=2"]  # 4 epochs in all: room to stop a run in the middle of a stage
CLI = [sys.executable, "-c", "from sparta.cli import app; app()"]  # the package has no __main__


def _config(store: PreparedStore, *overrides: str) -> Config:
    return load_config("micro", [f"data.store={store.path}", *EPOCHS, *overrides])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _flat(text: str) -> str:
    """Whitespace removed: rich wraps (and folds long paths) at 80 columns when stderr is not a terminal."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, micro_store: PreparedStore) -> Run:
    """The uninterrupted run every interrupted one must reproduce; its checkpoints also serve as real ones."""
    run = Run.create(_config(micro_store), tmp_path_factory.mktemp("reference") / "run")
    return Trainer(run, micro_store, progress=False).fit()


# --- interruption --------------------------------------------------------------------------------

def _signal_at_call(monkeypatch: pytest.MonkeyPatch, call: int, times: int = 1) -> None:
    """Send SIGINT to this process ``times`` times during the ``call``-th batch (train or validation)."""
    original, calls = Step.terms, []

    def terms(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Step, "terms", terms)


def test_signal_mid_epoch_keeps_the_last_complete_epoch(tmp_path, micro_store, monkeypatch):
    run = Run.create(_config(micro_store), tmp_path / "run")
    handlers = [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)]
    _signal_at_call(monkeypatch, 4)  # micro: 2 train + 1 validation batch per epoch, so epoch 2's first step
    with pytest.raises(TrainingInterrupted) as info:
        Trainer(run, micro_store, progress=False).fit()
    assert str(info.value) == (f"SIGINT: interrupted in stage pretrain epoch 2; {run.last} holds stage pretrain "
                               f"epoch 1; resume with `sparta train --resume {run.path}`")
    assert info.value.signum == signal.SIGINT
    state = load_checkpoint(run.last)
    assert (state["stage"], state["epoch"], len(state["history"])) == ("pretrain", 0, 1)  # no partial epoch 2
    assert [signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)] == handlers  # restored


def test_signal_in_the_first_epoch_says_there_is_nothing_to_resume(tmp_path, micro_store, monkeypatch):
    run = Run.create(_config(micro_store), tmp_path / "run")
    _signal_at_call(monkeypatch, 1)
    with pytest.raises(TrainingInterrupted, match=r"no epoch was complete, so there is no checkpoint yet; "
                                                  r"`sparta train --resume .*` trains it from the start"):
        Trainer(run, micro_store, progress=False).fit()
    assert not run.last.exists()


def test_a_second_signal_stops_at_once(tmp_path, micro_store, monkeypatch):
    run = Run.create(_config(micro_store), tmp_path / "run")
    handler = signal.getsignal(signal.SIGINT)
    _signal_at_call(monkeypatch, 1, times=2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(run, micro_store, progress=False).fit()
    assert signal.getsignal(signal.SIGINT) is handler


def test_handlers_are_left_alone_outside_the_main_thread():
    handler, seen = signal.getsignal(signal.SIGINT), []

    def body() -> None:
        with _on_stop_signals(lambda signum: None):
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [handler]


def _start_training(run: Path, store: PreparedStore) -> tuple[subprocess.Popen, Path]:
    """`sparta train` in a subprocess; returns it and the file receiving its stderr (logs and errors)."""
    log = run.parent / "stderr.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen([*CLI, "train", "--preset", "micro", "--model", "sparta", "--out", str(run),
                                 f"data.store={store.path}", *EPOCHS, "--no-progress"],
                                cwd=run.parent, stdout=subprocess.DEVNULL, stderr=fh)
    return proc, log


def _wait_for_first_epoch(proc: subprocess.Popen, run: Path, log: Path, timeout: float = 180) -> None:
    """metrics.csv is written after last.pt, so its first row means a complete epoch is on disk."""
    metrics, deadline = run / "metrics.csv", time.monotonic() + timeout
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"training ended (status {proc.wait()}) or stalled before its first epoch:\n"
                        f"{log.read_text()}")
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"


def _resume(run: Path) -> None:
    """`sparta train --resume RUN`, in-process: a second interpreter start would only add time."""
    result = CliRunner().invoke(app, ["train", "--resume", str(run), "--no-progress"])
    assert result.exit_code == 0 and (run / "COMPLETE").exists(), f"{result.output}\n{result.exception!r}"


def test_sigkill_mid_run_then_resume_matches_the_uninterrupted_run(tmp_path, micro_store, reference):
    run = tmp_path / "run"
    proc, log = _start_training(run, micro_store)
    _wait_for_first_epoch(proc, run, log)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    assert not (run / "COMPLETE").exists()
    load_checkpoint(run / "checkpoints" / "last.pt", expect_digest=reference.config.digest())

    _resume(run)
    assert _same_weights(reference.best, run / "checkpoints" / "best.pt")


def test_sigkill_before_the_first_checkpoint_then_resume_trains_from_the_start(tmp_path, reference):
    """The store is prepared after config.yaml is written, so a kill then comes before any checkpoint."""
    run, store = tmp_path / "run", tmp_path / "store"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen([*CLI, "train", "--preset", "micro", "--out", str(run), f"data.store={store}",
                                 *EPOCHS, "--no-progress"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=fh)
    deadline = time.monotonic() + 180
    while not (run / "config.yaml").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.01)
    proc.kill()
    assert proc.wait() == -signal.SIGKILL and not (run / "checkpoints").exists()
    _resume(run)  # the one command: no hint loop, no --overwrite
    assert _same_weights(reference.best, run / "checkpoints" / "best.pt")


def test_sigterm_exits_with_the_resume_hint_and_a_resumable_checkpoint(tmp_path, micro_store, reference):
    run = tmp_path / "run"
    proc, log = _start_training(run, micro_store)
    _wait_for_first_epoch(proc, run, log)
    proc.terminate()
    status = proc.wait(timeout=120)
    stderr = _flat(log.read_text())
    assert status == 128 + signal.SIGTERM, log.read_text()  # 143, as the README promises
    assert _flat("SIGTERM: interrupted") in stderr and "Traceback" not in stderr
    assert _flat(f"resume with `sparta train --resume {run}`") in stderr
    state = load_checkpoint(run / "checkpoints" / "last.pt", expect_digest=reference.config.digest())
    assert _flat(f"holds stage {state['stage']} epoch {state['epoch'] + 1};") in stderr
    assert not list((run / "checkpoints").glob(".*tmp*"))  # no half-written checkpoint left behind

    _resume(run)
    assert _same_weights(reference.best, run / "checkpoints" / "best.pt")


# --- bad input through the CLI -------------------------------------------------------------------

def _fails(args: list, *expected: str) -> str:
    """Run the CLI in-process; it must exit with status 2 and one error naming all of ``expected``."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output and "\nerror: " in "\n" + result.stderr, result.output
    error = result.stderr[result.stderr.index("error: "):]  # after any progress bar (data prepare has one)
    for text in expected:
        assert _flat(text) in _flat(error), error
    return error


def _zarr(path: Path, ds: xr.Dataset) -> Path:
    ds.to_zarr(path, zarr_format=2, consolidated=True, mode="w")  # WeatherBench2 stores are zarr v2
    return path


def _era5(n_days: int = 30, **kwargs) -> xr.Dataset:
    """WeatherBench2 names and dims: (time, [level,] longitude, latitude) on 64x32 cell centres."""
    return synthetic_era5(n_days=n_days, **kwargs).load()


def _prepare(source: Path, out: Path, *expected: str) -> str:
    return _fails(["data", "prepare", "--preset", "micro", "--source", source, "--out", out], *expected)


def test_missing_data_path(tmp_path):
    _prepare(Path("/nonexistent.zarr"), tmp_path / "out",
             "cannot open '/nonexistent.zarr' as a zarr store", "does not exist; check the path or URL")
    _prepare(Path("/nonexistent.nc"), tmp_path / "out", "no such file: '/nonexistent.nc'")
    assert not (tmp_path / "out").exists()


def test_unreadable_data(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    _prepare(tmp_path / "empty.zarr", tmp_path / "out", "as a zarr store", "check the path or URL")
    (tmp_path / "garbage.nc").write_bytes(b"not netcdf" * 100)
    _prepare(tmp_path / "garbage.nc", tmp_path / "out", "cannot read", "as netCDF (tried netcdf4:")


def test_store_missing_a_variable(tmp_path):
    source = _zarr(tmp_path / "era5.zarr", _era5().drop_vars("specific_humidity"))
    _prepare(source, tmp_path / "out", "variable 'specific_humidity' is not in the store; it has: 2m_temperature",
             "fix data.variables")


def test_store_without_the_850_level(tmp_path):
    at_500 = ["2m_temperature", *(f"{v}@500" for v in ("geopotential", "u_component_of_wind",
                                                       "v_component_of_wind", "specific_humidity"))]
    source = _zarr(tmp_path / "era5.zarr", _era5(variables=at_500))
    _prepare(source, tmp_path / "out", "level 850 hPa of 'geopotential' is not in the store; it has levels 500 hPa")


def test_store_on_another_grid(tmp_path):
    source = _zarr(tmp_path / "coarse.zarr", _era5(grid="32x16"))
    _prepare(source, tmp_path / "out", "the store is on a 32x16 grid (lon x lat), expected 64x32",
             "or set data.grid=32x16")
    shifted = _era5().pipe(lambda ds: ds.assign_coords(latitude=ds["latitude"] + 1.0))
    source = _zarr(tmp_path / "shifted.zarr", shifted)
    _prepare(source, tmp_path / "out", "latitudes do not match the 64x32 equiangular grid",
             "value 0 is -86.1875, expected -87.1875")


def test_nan_values_are_counted(tmp_path):
    ds = _era5()
    ds["2m_temperature"][3, :2, :2] = np.nan
    ds["geopotential"][7:9, 0, 0, 0] = np.nan
    _prepare(_zarr(tmp_path / "era5.zarr", ds), tmp_path / "out",
             "non-finite values in the data (t2m: 4 values on 1 day(s) from 1980-01-04; "
             "z850: 2 values on 2 day(s) from 1980-01-08)", "fill or drop those days")
    assert not (tmp_path / "out" / "meta.json").exists()


def test_time_axis_not_monotonic(tmp_path):
    ds = _era5()
    order = np.r_[0:5, 6, 5, 7:30]
    _prepare(_zarr(tmp_path / "era5.zarr", ds.isel(time=order)), tmp_path / "out",
             "time axis is not strictly increasing at 1980-01-07", "sort the data by time and drop duplicates")


def test_time_axis_with_gaps(tmp_path):
    daily = _era5().drop_isel(time=[10, 11, 12])
    _prepare(_zarr(tmp_path / "daily.zarr", daily), tmp_path / "out",
             "time axis has 1 gap(s) in the daily record: 1980-01-10..1980-01-14", "provide a continuous record")
    six_hourly = synthetic_era5(n_days=10, freq="6h").load().drop_isel(time=[9])
    _prepare(_zarr(tmp_path / "6h.zarr", six_hourly), tmp_path / "out",
             "irregular time step", "provide a regular sub-daily record without gaps")


@pytest.fixture(scope="module")
def short_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 days: a 36/12/12-day split, too short for the micro sampler's validation batches."""
    return _zarr(tmp_path_factory.mktemp("short") / "era5.zarr", _era5(60))


def test_too_few_days_for_the_sampler(tmp_path, short_source):
    _fails(["train", "--preset", "micro", "--out", tmp_path / "run", "--no-progress",
            f"data.source={short_source}", f"data.store={tmp_path / 'store'}"],
           "a split of 12 days has 2 anchor days (t ± 5 must exist)", "use a longer split or a smaller "
           "train.batch_size")


def test_too_few_days_for_the_forecast_windows(tmp_path, short_source, reference):
    cfg = load_config("micro", [f"data.source={short_source}", f"data.store={tmp_path / 'store'}", *EPOCHS])
    open_or_prepare(cfg.data, progress=False)  # evaluate never prepares a run's store itself
    run = Run.create(cfg, tmp_path / "run")
    run.checkpoints.mkdir()
    shutil.copy(reference.best, run.best)  # the same model, variables and grid: only the record is short
    _fails(["evaluate", run.path, "--tasks", "forecast", "--no-progress"],
           "forecast LB5_S1: the test split is too short (inner val has 2 days, needs 6", "use a longer record")


def test_config_typo_and_out_of_range_values(tmp_path):
    train = ["train", "--preset", "micro", "--out", tmp_path / "run"]
    _fails([*train, "train.epoch_pretrain=3"], "unknown config key 'train.epoch_pretrain'")
    _fails([*train, "train.lr=-1"], "invalid value for 'train.lr': Input should be greater than 0")
    _fails([*train, "train.epochs_pretrain=three"], "invalid value for 'train.epochs_pretrain'")
    _fails([*train, "train.batch_size=10"], "train.batch_size=10 must be a multiple of 3")
    _fails([*train, "train.lr"], "override 'train.lr' is not of the form section.key=value")
    _fails(["train", "--preset", "mirco", "--out", tmp_path / "run"], "unknown preset 'mirco'; available:")
    assert not (tmp_path / "run").exists()  # refused before anything is written


@pytest.fixture
def eval_run(tmp_path, micro_store) -> Run:
    """A run directory (config and store in place) whose checkpoints each test writes."""
    run = Run.create(_config(micro_store), tmp_path / "run")
    run.checkpoints.mkdir()
    return run


def test_evaluate_with_a_corrupt_checkpoint(eval_run, reference):
    eval_run.best.write_bytes(random.Random(0).randbytes(4096))
    _fails(["evaluate", eval_run.path, "--no-progress"], "is truncated, corrupt or not a SPARTA checkpoint")
    eval_run.best.write_bytes(reference.best.read_bytes()[:5000])
    _fails(["evaluate", eval_run.path, "--no-progress"], "is truncated, corrupt or not a SPARTA checkpoint")
    torch.save({"model": {"w": torch.zeros(3)}}, eval_run.best)
    _fails(["evaluate", eval_run.path, "--no-progress"], f"'{eval_run.best}' is not a SPARTA checkpoint")
    eval_run.best.unlink()
    _fails(["evaluate", eval_run.path, "--no-progress"], "has no trained model", "sparta train --resume RUN")


def test_evaluate_refuses_a_checkpoint_of_another_config(tmp_path, micro_store, reference):
    run = Run.create(_config(micro_store, "model.width=8"), tmp_path / "run")
    run.checkpoints.mkdir()
    shutil.copy(reference.best, run.best)
    # An unknown task keeps this fast: the checkpoint is loaded (and should be refused) before tasks run.
    _fails(["evaluate", run.path, "--tasks", "none", "--no-progress"], "was made with another model/config")


def test_resume_with_a_foreign_or_broken_checkpoint(tmp_path, micro_store, reference):
    run = Run.create(_config(micro_store, "model.width=8"), tmp_path / "run")
    run.checkpoints.mkdir()
    shutil.copy(reference.last, run.last)
    _fails(["train", "--resume", run.path, "--no-progress"], "was made with another model/config (digest")
    run.last.write_bytes(reference.last.read_bytes()[:5000])
    _fails(["train", "--resume", run.path, "--no-progress"], "is truncated, corrupt or not a SPARTA checkpoint")
    _fails(["train", "--resume", tmp_path], f"'{tmp_path}' is not a SPARTA run directory (no config.yaml)")
    _fails(["train", "--resume", run.path, "train.lr=1"], "--resume continues a run with its saved config")


def test_an_existing_run_is_never_replaced_without_overwrite(tmp_path, micro_store):
    run = Run.create(_config(micro_store), tmp_path / "run")
    run.checkpoints.mkdir()
    run.best.write_bytes(b"trained weights")
    run.mark_complete()
    _fails(["train", "--preset", "micro", "--out", run.path, f"data.store={micro_store.path}"],
           f"run directory '{run.path}' already exists; continue it with --resume {run.path}",
           "or pass --overwrite to replace it")
    assert run.best.read_bytes() == b"trained weights" and run.is_complete


def test_an_existing_prepared_store_is_never_replaced_without_overwrite(tmp_path):
    source = _zarr(tmp_path / "era5.zarr", _era5())
    result = CliRunner().invoke(app, ["data", "prepare", "--preset", "micro", "--source", str(source),
                                      "--out", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    _prepare(source, tmp_path / "store", "already holds a prepared store", "pass --overwrite")


def test_errors_are_one_verbatim_line(tmp_path):
    source = tmp_path / "[old]" / "a-rather-long-directory-name-for-the-era5-record.zarr"
    stderr = _prepare(source, tmp_path / "out", "cannot open")
    assert stderr.count("\n") == 1 and str(source) in stderr


def test_cli_keeps_the_traceback_of_internal_errors(monkeypatch):
    """Only UserError subclasses become one-line errors; a bare ValueError from a bug is not hidden."""
    import sparta.cli as cli

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    with pytest.raises(ValueError, match="an internal bug"):
        cli._user_errors(broken)()
    from sparta.config import ConfigError

    def wrong(*args, **kwargs):
        raise ConfigError("a user mistake")

    import typer

    with pytest.raises(typer.Exit) as exit_info:
        cli._user_errors(wrong)()
    assert exit_info.value.exit_code == 2


def test_cli_import_stays_light():
    """Importing the CLI (for --help) does not import torch: every command imports what it needs."""
    import subprocess
    import sys

    code = "import sys, sparta.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
