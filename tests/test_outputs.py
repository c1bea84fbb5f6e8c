"""Outputs: nothing SPARTA did not write is replaced, and every output path that cannot be written is one
`error:` line (exit 2) naming the path and the fix, in every command (issue 16)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from sparta.cli import app
from sparta.config import load_config
from sparta.data.store import PreparedStore
from sparta.data.synthetic import synthetic_era5
from sparta.runs import Run
from sparta.training import Trainer


def _flat(text: str) -> str:
    return "".join(text.split())


def _fails(args: list, *expected: str) -> str:
    """The CLI, in-process: exit status 2, no traceback, one `error:` line naming all of ``expected``."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output, result.output
    error = result.stderr[result.stderr.index("error: "):]
    assert error.count("error: ") == 1 and error.rstrip("\n").count("\n") == 0, error
    for text in expected:
        assert _flat(text) in _flat(error), error
    return error


def _ok(args: list) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    return result.output


@pytest.fixture(scope="module")
def run(tmp_path_factory, micro_store) -> Run:
    cfg = load_config("micro", [f"data.store={micro_store.path}", "train.steps_per_epoch=1"])
    return Trainer(Run.create(cfg, tmp_path_factory.mktemp("trained") / "run"), micro_store, progress=False).fit()


@pytest.fixture(scope="module")
def embeddings(run, micro_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("emb") / "emb.nc"
    _ok(["embed", "--run", run.path, "--data", micro_store.path, "--out", out])
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "era5.zarr"
    synthetic_era5(n_days=30).load().to_zarr(path, zarr_format=2, consolidated=True, mode="w")
    return path


def _deny_writes(monkeypatch: pytest.MonkeyPatch, under: Path) -> None:
    """``under`` behaves as a directory without write permission (the tests run as root, who may write anywhere)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).absolute() == under.absolute():
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


# --- nothing SPARTA did not write is replaced ------------------------------------------------------

def test_train_overwrite_never_deletes_a_users_directory(tmp_path, micro_store):
    user = tmp_path / "d"
    user.mkdir()
    (user / "thesis.tex").write_text("x")
    for extra in ([], ["--overwrite"]):
        _fails(["train", "--preset", "micro", "--out", user, f"data.store={micro_store.path}", *extra],
               f"'{user}' is not empty and is not a SPARTA run (it holds thesis.tex)",
               "SPARTA never deletes or overwrites files it did not write")
    assert (user / "thesis.tex").read_text() == "x" and sorted(p.name for p in user.iterdir()) == ["thesis.tex"]


def test_train_overwrite_replaces_only_a_runs_own_files(tmp_path, micro_store, run):
    copy = Run.create(run.config, tmp_path / "run")
    (copy.path / "notes.txt").write_text("mine")
    (copy.path / "figures").mkdir()
    (copy.path / "figures" / "draft.docx").write_text("mine too")
    _fails(["train", "--preset", "micro", "--out", copy.path, "--overwrite", f"data.store={micro_store.path}"],
           "also holds files SPARTA did not write (figures/draft.docx, notes.txt)", "move those out")
    assert (copy.path / "notes.txt").read_text() == "mine" and (copy.path / "config.yaml").is_file()
    (copy.path / "notes.txt").unlink()
    (copy.path / "figures" / "draft.docx").unlink()
    (copy.path / "metrics.csv").write_text("old")
    _ok(["train", "--preset", "micro", "--out", copy.path, "--overwrite", "--no-progress",
         f"data.store={micro_store.path}", "train.steps_per_epoch=1"])
    assert (copy.path / "COMPLETE").exists() and (copy.path / "metrics.csv").read_text() != "old"


def test_prepare_never_overwrites_a_users_files(tmp_path, source):
    out = tmp_path / "DIR"
    out.mkdir()
    np.save(out / "fields.npy", np.arange(3.0))
    for extra in ([], ["--overwrite"]):
        _fails(["data", "prepare", "--preset", "micro", "--source", source, "--out", out, *extra],
               f"'{out}' is not empty and is not a SPARTA store (it holds fields.npy)")
    np.testing.assert_array_equal(np.load(out / "fields.npy"), np.arange(3.0))
    assert sorted(p.name for p in out.iterdir()) == ["fields.npy"]


def test_prepare_overwrite_replaces_a_store_but_not_files_added_to_it(tmp_path, source):
    out = tmp_path / "store"
    prepare = ["data", "prepare", "--preset", "micro", "--source", source, "--out", out]
    _ok(prepare)
    _fails(prepare, "already holds a prepared store; pass --overwrite")
    (out / "README.txt").write_text("mine")
    _fails([*prepare, "--overwrite"], "also holds files SPARTA did not write (README.txt)")
    (out / "README.txt").unlink()
    _ok([*prepare, "--overwrite"])
    assert PreparedStore.open(out).units["t2m"] == "K"


def test_embed_and_decode_overwrite_only_their_own_files(tmp_path, run, micro_store, embeddings):
    user = tmp_path / "notes.nc"
    xr.Dataset({"x": ("a", np.arange(3))}, attrs={"title": "my thesis data"}).to_netcdf(user)
    before = user.read_bytes()
    _fails(["embed", "--run", run.path, "--data", micro_store.path, "--out", user],
           f"output '{user}' already exists")
    _fails(["embed", "--run", run.path, "--data", micro_store.path, "--out", user, "--overwrite"],
           f"output '{user}' was not written by SPARTA (its title is 'my thesis data')", "choose another --out")
    _fails(["decode", "--run", run.path, "--embeddings", embeddings, "--out", user, "--overwrite"],
           "was not written by SPARTA")
    assert user.read_bytes() == before
    decoded = tmp_path / "decoded.nc"
    _ok(["decode", "--run", run.path, "--embeddings", embeddings, "--out", decoded])
    _ok(["decode", "--run", run.path, "--embeddings", embeddings, "--out", decoded, "--overwrite"])
    with xr.open_dataset(decoded) as ds:  # CF units on every decoded variable
        assert {name: ds[name].attrs["units"] for name in ds.data_vars} == {
            "t2m": "K", "z850": "m**2 s**-2", "u850": "m s**-1", "v850": "m s**-1", "q850": "kg kg**-1"}
    with xr.open_dataset(embeddings) as ds:
        assert list(ds["channel_units"].values) == ["K", "m**2 s**-2", "m s**-1", "m s**-1", "kg kg**-1"]


def test_report_never_replaces_a_users_report(tmp_path):
    (tmp_path / "report.md").write_text("# my own report\n")
    _fails(["report", tmp_path], f"'{tmp_path / 'report.md'}' exists and was not written by SPARTA")
    _fails(["reproduce", "--preset", "micro", "--out", tmp_path, "--only", "autoencoder"],
           "exists and was not written by SPARTA")
    assert (tmp_path / "report.md").read_text() == "# my own report\n"


# --- output paths that cannot be written: one line, exit 2, per command ----------------------------

def test_prepare_output_paths(tmp_path, source, monkeypatch):
    prepare = ["data", "prepare", "--preset", "micro", "--source", source, "--out"]
    (tmp_path / "file").write_text("x")
    _fails([*prepare, tmp_path / "file"], f"'{tmp_path / 'file'}' exists and is a file; --out must be a directory")
    _fails([*prepare, tmp_path / "file" / "store"], f"cannot create '{tmp_path / 'file' / 'store'}'",
           f"'{tmp_path / 'file'}' exists and is a file, not a directory; choose another --out")
    locked = tmp_path / "locked"
    locked.mkdir()
    _deny_writes(monkeypatch, locked)
    _fails([*prepare, locked / "store"], f"cannot write '{locked / 'store'}': '{locked}' is not writable "
           "(permission denied); choose a writable --out")
    assert not any(locked.iterdir())


def test_prepare_on_a_full_disk_leaves_nothing_half_written(tmp_path, source, monkeypatch):
    real = np.lib.format.open_memmap

    def full(path, *args, **kwargs):
        real(path, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(np.lib.format, "open_memmap", full)
    _fails(["data", "prepare", "--preset", "micro", "--source", source, "--out", tmp_path / "store"],
           f"no space left on the disk while writing '{tmp_path / 'store' / 'fields.npy.partial'}'",
           "free some space or write to another disk")
    assert not (tmp_path / "store" / "fields.npy.partial").exists()
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("U", (), {"free": 1000})())
    _fails(["data", "prepare", "--preset", "micro", "--source", source, "--out", tmp_path / "store2"],
           f"not enough disk space for '{tmp_path / 'store2'}': it needs", "GB free")


def test_train_output_paths(tmp_path, micro_store, monkeypatch):
    train = ["train", "--preset", "micro", f"data.store={micro_store.path}", "--out"]
    (tmp_path / "file").write_text("x")
    _fails([*train, tmp_path / "file"], f"'{tmp_path / 'file'}' exists and is a file")
    _fails([*train, tmp_path / "file" / "run"], "exists and is a file, not a directory")
    _deny_writes(monkeypatch, tmp_path)
    _fails([*train, tmp_path / "run"], f"'{tmp_path}' is not writable (permission denied)")
    assert (tmp_path / "file").read_text() == "x"


def test_embed_and_decode_output_paths(tmp_path, run, micro_store, embeddings, monkeypatch):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.nc").mkdir()
    embed = ["embed", "--run", run.path, "--data", micro_store.path, "--out"]
    decode = ["decode", "--run", run.path, "--embeddings", embeddings, "--out"]
    for command in (embed, decode):
        _fails([*command, tmp_path / "file" / "out.nc"], "exists and is a file, not a directory")
        _fails([*command, tmp_path / "dir.nc"], f"'{tmp_path / 'dir.nc'}' exists and is a directory")

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    _fails([*decode, tmp_path / "decoded.nc"], "no space left on the disk while writing")
    assert not list(tmp_path.glob(".decoded.nc.partial*"))
    _deny_writes(monkeypatch, tmp_path)
    _fails([*embed, tmp_path / "emb.nc"], f"'{tmp_path}' is not writable (permission denied)")


def test_evaluate_reproduce_and_report_output_paths(tmp_path, run, monkeypatch):
    (tmp_path / "file").write_text("x")
    _fails(["reproduce", "--preset", "micro", "--out", tmp_path / "file"], "exists and is a file")
    _fails(["report", tmp_path / "file"], "is not a directory of `sparta reproduce` results")
    (tmp_path / "grid" / "report.html").mkdir(parents=True)
    _fails(["report", tmp_path / "grid"], f"'{tmp_path / 'grid' / 'report.html'}' is a directory")
    _deny_writes(monkeypatch, run.path)
    _fails(["evaluate", run.path, "--no-progress"], f"cannot write '{run.path}'", "is not writable")


# --- paths inside a run's config --------------------------------------------------------------------

def test_a_runs_relative_store_is_found_from_anywhere_and_never_rebuilt(tmp_path, micro_store, monkeypatch):
    home = tmp_path / "project"
    (home / "data").mkdir(parents=True)
    os.symlink(micro_store.path, home / "data" / "store")
    monkeypatch.chdir(home)
    run = Run.create(load_config("micro", ["data.store=data/store"]), Path("runs/r"))
    saved = (home / "runs" / "r" / "config.yaml").read_text()
    assert "store: ../../data/store" in saved  # kept relative to the run directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert Path(Run.open(home / "runs" / "r").config.data.store) == home / "data" / "store"
    (home / "data" / "store").unlink()
    _fails(["evaluate", home / "runs" / "r", "--no-progress"],
           f"the run's prepared store '{home / 'data' / 'store'}' does not exist")
    assert not any(elsewhere.iterdir())  # nothing rebuilt in the current directory
    assert sorted(p.name for p in (home / run.path).iterdir()) == ["config.yaml"]


class _Touch:
    """Unpickling calls ``Path.touch(marker)``: a harmless trace of code that ran. It never does: every loader
    refuses it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's warning about the legacy (non-zip) format
@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 5"])
def test_a_checkpoint_with_pickled_code_is_refused_in_one_plain_line_everywhere(tmp_path, run, micro_store,
                                                                                 embeddings, writer):
    import pickle

    import torch

    from sparta import inference
    from sparta.checkpoint import CheckpointError

    marker = tmp_path / "code-ran"
    state = dict(torch.load(run.best, weights_only=True), extra=_Touch(marker))

    def plant(target: Run) -> Run:
        target.checkpoints.mkdir()
        for path in (target.best, target.last):
            if writer == "torch.save":
                torch.save(state, path)
            else:
                path.write_bytes(pickle.dumps(state, protocol=5))
        return target

    copy = plant(Run.create(run.config, tmp_path / "run"))
    grid = tmp_path / "grid"
    plant(Run.create(run.config, grid / "sparta")).mark_complete()  # reproduce goes on to evaluate it
    expected = ("was not loaded: it contains pickled Python objects (", "pathlib.Path",  # names: as pickled
                ") that could run code when loaded, and SPARTA never writes such files")
    for args in (["evaluate", copy.path, "--no-progress"],
                 ["embed", "--run", copy.path, "--data", micro_store.path, "--out", tmp_path / "e.nc"],
                 ["decode", "--run", copy.path, "--embeddings", embeddings, "--out", tmp_path / "d.nc"],
                 ["train", "--resume", copy.path, "--no-progress"],
                 ["reproduce", "--preset", "micro", "--only", "sparta", "--out", grid, "--no-progress",
                  f"data.store={micro_store.path}", "train.steps_per_epoch=1"]):
        error = _fails(args, *expected)
        assert "weights_only" not in error and "torch.load" not in error and "truncated" not in error
    with pytest.raises(CheckpointError) as refused:
        inference.load(copy.path)
    assert all(text in str(refused.value) for text in expected)
    assert not marker.exists()


def test_store_meta_records_units_and_time_aggregation(tmp_path, source):
    _ok(["data", "prepare", "--preset", "micro", "--source", source, "--out", tmp_path / "s"])
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["units"] == {"t2m": "K", "z850": "m**2 s**-2", "u850": "m s**-1", "v850": "m s**-1",
                             "q850": "kg kg**-1"}
    assert meta["time_aggregation"].startswith("daily values as given")
