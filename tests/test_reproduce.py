"""The grid runner: variants run in parallel processes give the results of a sequential run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparta.config import ConfigError
from sparta.reproduce import reproduce
from sparta.runs import RunError

VARIANTS = ["pca", "autoencoder"]


def _metrics(out) -> dict:
    scores = {}
    for name in VARIANTS:
        results = json.loads((out / name / "evaluation" / "metrics.json").read_text())
        results.pop("run")  # the run's own path
        scores[name] = results
    return scores


def test_parallel_variants_score_as_a_sequential_grid(tmp_path, micro_store):
    overrides = [f"data.store={micro_store.path}"]
    threads = torch.get_num_threads()
    # Each of 2 jobs gets half the threads, so the sequential reference runs with that many. The count is only ever
    # lowered and restored, never raised past the start: with OMP_NUM_THREADS=1 this test used to set 2, and the
    # suite then aborted in a later test's Adam step (a test alone passes; MKL's thread change, see test_eof).
    try:
        torch.set_num_threads(max(1, threads // 2))
        reproduce("micro", tmp_path / "sequential", VARIANTS, overrides, progress=False)
    finally:
        torch.set_num_threads(threads)
    md, _ = reproduce("micro", tmp_path / "parallel", VARIANTS, overrides, progress=False, jobs=2)
    assert md.exists()
    for name in VARIANTS:
        assert (tmp_path / "parallel" / name / "evaluation" / "COMPLETE").exists()
    assert _metrics(tmp_path / "parallel") == _metrics(tmp_path / "sequential")


def test_jobs_below_one_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--jobs must be at least 1, got 0"):
        reproduce("micro", tmp_path, VARIANTS, jobs=0)


def test_the_command_ends_with_the_verdict_and_where_to_look(tmp_path, micro_store):
    """What a user sees when `sparta reproduce` ends: the verdict's sentences, report.html, a decoded day; and no
    third-party warning on the terminal (the command in its own process, as run from a shell)."""
    out = tmp_path / "grid"
    done = subprocess.run([sys.executable, "-m", "sparta.cli", "reproduce", "--preset", "micro", "--only", "pca",
                           "--out", str(out), "--no-progress", f"data.store={micro_store.path}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Verdict:" and lines[1].startswith("  Reconstruction: from complete input EOF/PCA (linear) decodes best")
    assert any(line.startswith("  Season classification accuracy") for line in lines)
    assert f"Report: {out / 'report.html'}" in lines
    figure = next(line for line in lines if line.startswith("Decoded test day, EOF/PCA (linear): ")).split(": ", 1)[1]
    assert Path(figure).is_file() and Path(figure).suffix == ".png"


def test_other_downstream_settings_evaluate_the_same_model_again(tmp_path, micro_store):
    """Downstream settings are outside the trained model: changing one re-evaluates the run instead of refusing
    it, while a training setting still makes reproduce refuse the run."""
    out, overrides = tmp_path / "grid", [f"data.store={micro_store.path}"]
    reproduce("micro", out, ["pca"], overrides, progress=False)
    run = out / "pca"
    model = (run / "checkpoints" / "best.pt").read_bytes()
    assert json.loads((run / "evaluation" / "metrics.json").read_text())["classify"]["seeds"] == 3
    reproduce("micro", out, ["pca"], [*overrides, "downstream.classify_seeds=1"], progress=False)
    assert json.loads((run / "evaluation" / "metrics.json").read_text())["classify"]["seeds"] == 1
    assert "classify_seeds: 1" in (run / "config.yaml").read_text()
    assert (run / "checkpoints" / "best.pt").read_bytes() == model  # not retrained
    with pytest.raises(RunError, match="was trained with another config"):
        reproduce("micro", out, ["pca"], [*overrides, "train.seed=7"], progress=False)
