"""The probes of docs/reliability.md that found defects: each is now one `error:` line (exit 2), before
anything runs or allocates."""

from __future__ import annotations

import re

import pytest
import torch

from sparta.config import load_config
from sparta.grids import Grid
from sparta.models.build import build_model
from sparta.training import TrainingError, check_model_fits
from cli_checks import cli_fails


# --- YAML that would build Python objects -----------------------------------------------------------

def test_a_config_file_with_python_tags_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "code-ran"  # what the tag would do under an unsafe loader: a harmless trace
    config = tmp_path / "config.yaml"
    config.write_text(f"method: sparta\ntrain: !!python/object/apply:pathlib.Path.touch ['{marker}']\n")
    cli_fails(["config", "validate", config],
           f"'{config}' has the YAML tag '!!python/object/apply:pathlib.Path.touch' (line 2, column 8); a SPARTA "
           "config holds plain values only, no tags that build (Python) objects: nothing was loaded or run")
    cli_fails(["config", "show", f"train.lr=!!python/object/apply:pathlib.Path.touch ['{marker}']"],
           "override 'train.lr=!!python/object/apply:pathlib.Path.touch", "has the YAML tag",
           "nothing was loaded or run")
    assert not marker.exists()


def test_malformed_yaml_is_one_line_with_its_place(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("train:\n  lr: [1, 2\n")
    cli_fails(["config", "validate", config], f"'{config}' is not valid YAML: expected ',' or ']'", "(line 3, column 1)")
    cli_fails(["config", "show", "model.fusion=["], "override 'model.fusion=[' is not valid YAML")


# --- sizes that cannot fit ---------------------------------------------------------------------------

def test_a_grid_too_large_for_any_machine_is_refused_when_named(tmp_path):
    expected = ("invalid value for 'data.grid': grid '100000x50000' has 5e+09 points per field, more than SPARTA "
                "handles (1e+07; ERA5's native 0.25 degree grid, 1440x721, has 1.04e+06)")
    cli_fails(["config", "show", "data.grid=100000x50000"], expected)
    cli_fails(["data", "prepare", "--preset", "micro", "--source", "synthetic", "--out", tmp_path / "s",
            "data.grid=100000x50000"], expected)
    assert not (tmp_path / "s").exists()
    assert load_config("micro", ["data.grid=3600x1801"]).data.grid == "3600x1801"  # 0.1 degree: 6.5e6 points


def test_a_model_whose_parameters_cannot_fit_is_refused_before_it_is_built(tmp_path, micro_store):
    cli_fails(["train", "--preset", "micro", "--out", tmp_path / "run", "--no-progress", f"data.store={micro_store.path}",
            "model.embed_dim=1000000000"],
           "the model has 6.1e+10 parameters (model.embed_dim=1000000000, model.width=4, model.decoder_channels=10): "
           "training needs 976 GB for them, their gradients and Adam's moments, and cpu has",
           "GB free; choose smaller sizes")
    cli_fails(["train", "--preset", "micro", "--out", tmp_path / "wide", "--no-progress", f"data.store={micro_store.path}",
            "model.width=100000"], "the model has 2.72e+13 parameters")


def test_the_model_memory_check_counts_four_float32_copies_of_the_parameters(monkeypatch):
    cfg = load_config("micro")
    layout = [Grid(("2m_temperature", "geopotential@850"), 32, 64)]
    n = sum(p.numel() for p in build_model(cfg, layout).parameters())
    monkeypatch.setattr("sparta.training.free_memory", lambda device: 16 * n)
    check_model_fits(cfg, layout, torch.device("cpu"))  # weights, gradients and Adam's two moments just fit
    monkeypatch.setattr("sparta.training.free_memory", lambda device: 16 * n - 1)
    with pytest.raises(TrainingError, match=re.escape(f"the model has {n:.3g} parameters")):
        check_model_fits(cfg, layout, torch.device("cpu"))


def test_more_eofs_than_values_per_sample_are_refused_before_allocating_them(tmp_path, micro_store):
    cli_fails(["train", "--preset", "micro", "--model", "pca", "--out", tmp_path / "run", f"data.store={micro_store.path}",
            "model.embed_dim=1000000000"],
           "model.embed_dim=1000000000 EOFs exceed the 10240 values of one sample (64x32); choose model.embed_dim "
           "<= 10240")
