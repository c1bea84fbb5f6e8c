"""The benchmark scripts' configurations stay valid as presets change (bench.py broke silently once: the quick
preset's EOF start refuses paper-mode views)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sparta.config import load_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", ["quick", "paper"])
@pytest.mark.parametrize("mode", ["native", "paper"])
def test_every_bench_case_has_a_valid_config(size, mode):
    cfg = load_config(size, overrides=_script("bench")._mode_overrides(mode))
    assert cfg.augment.mode == mode


@pytest.mark.parametrize("method", ["sparta", "autoencoder"])
def test_the_side_by_side_benchmark_config_is_valid(method):
    vs = _script("vs_authors")
    cfg = load_config("paper", ["data.store=unused", f"train.batch_size={vs.BATCH}"], method=method)
    assert cfg.train.batch_size == 126 and cfg.train.compile
