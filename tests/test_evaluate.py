"""Downstream evaluation end to end on the micro preset: every task, its files, and determinism."""

import json
import math
import shutil

import pytest
from typer.testing import CliRunner

from sparta.cli import app
from sparta.config import load_config
from sparta.evaluate import FIELD_METRICS, ROBUSTNESS_RATIOS, TASKS, Evaluation
from sparta.runs import Run
from sparta.training import Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory, micro_store) -> Run:
    cfg = load_config("micro", [f"data.store={micro_store.path}"])
    run = Run.create(cfg, tmp_path_factory.mktemp("eval") / "run")
    return Trainer(run, micro_store, progress=False).fit()


@pytest.fixture(scope="module")
def evaluated(trained, micro_store) -> dict:
    return Evaluation(trained, micro_store, progress=False).run_tasks(list(TASKS))


def test_every_task_writes_finite_results(trained, evaluated):
    ds = trained.config.downstream
    assert set(evaluated["forecast"]) == {"LB5_S1", "LB3_S5"}
    s5 = evaluated["forecast"]["LB3_S5"]
    assert s5["seeds"] == len(ds.forecast_seeds) and evaluated["forecast"]["LB5_S1"]["seeds"] == 1
    assert len(s5["curve"]["rrmse_paper"]) == ds.rollout_steps and list(s5["at"]["rrmse_l2"]) == ["5", "10"]
    assert set(s5["curve"]) == set(FIELD_METRICS) and set(s5["baselines"]) == {"rrmse_paper", "rrmse_l2"}
    for per_name in s5["baselines"].values():
        assert set(per_name) == {"persistence", "climatology", "reconstruction ceiling"}
    assert set(s5["rrmse_l2_per_channel"]["10"]) == {"t2m", "z850", "u850", "v850", "q850"}
    assert set(FIELD_METRICS) | {"rrmse_l2_per_channel"} <= set(evaluated["definitions"])
    d = evaluated["diffusion"]
    assert d["conditions"] == ds.max_conditions and d["samples"] == ds.diffusion_samples
    c = evaluated["classify"]
    assert 0 <= c["accuracy"] <= 1 and sum(map(sum, c["confusion"])) > 0
    assert evaluated["robustness"]["mask_ratio"] == list(ROBUSTNESS_RATIOS)
    numbers = [d["rrmse_paper"], d["rrmse_l2"], c["cross_entropy"],
               evaluated["smoothness"]["temporal"]["mean"], *evaluated["robustness"]["rrmse_l2"]]
    assert all(math.isfinite(x) for x in numbers)
    lines = (trained.evaluation / "forecast_curves.csv").read_text().splitlines()
    assert lines[0] == "setting,seed,lead,metric,value"
    assert len(lines) == 1 + len(FIELD_METRICS) * ds.rollout_steps * (1 + len(ds.forecast_seeds))
    for name in ("forecast_error_LB5_S1_T10.png", "diffusion_reconstruction.png", "classification_confusion.png",
                 "temporal_distance.png", "cycle_distance.png", "pca.png", "robustness.png",
                 "forecast_curves_LB5_S1.png"):
        assert (trained.figures / name).is_file(), name


def test_same_seed_gives_bit_identical_metrics(tmp_path, trained, evaluated, micro_store):
    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy, ignore=shutil.ignore_patterns("evaluation", "figures"))
    again = Evaluation(Run.open(copy), micro_store, progress=False).run_tasks(list(TASKS))
    strip = lambda r: {k: v for k, v in r.items() if k != "run"}  # noqa: E731
    assert json.dumps(strip(again), sort_keys=True) == json.dumps(strip(evaluated), sort_keys=True)


def test_evaluate_command_prints_the_paper_tables(trained, evaluated):
    result = CliRunner().invoke(app, ["evaluate", str(trained.path), "--tasks", "classify,diagnostics",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Conditional latent diffusion and latent classification" in result.output
    assert "Smoothness metrics" in result.output
    tables = (trained.evaluation / "tables.md").read_text()
    assert "Autoregressive RRMSE (paper formula, %) - 10 steps, look-back 5" in tables
    assert "Autoregressive RRMSE (L2, ours, %) - 10 steps, look-back 5" in tables
    assert "Forecast RRMSE (L2, ours, %) per channel" in tables


def test_reconstruction_ceiling_is_the_decoder_on_the_true_latents(trained, micro_store):
    """The ceiling at lead T pools the decoded complete-input latents of every window's T-th target day."""
    import torch

    from sparta.metrics import rrmse, rrmse_paper

    ev = Evaluation(trained, micro_store, progress=False)
    first_target = torch.arange(ev.inner["test"][0] + 3, ev.inner["test"][0] + 9)
    baselines = ev._baselines(first_target, ev._monthly_climatology())
    decoded = ev.frozen.decode(ev.h_clean)
    for lead in (1, 4):
        days = first_target + lead - 1
        assert baselines["rrmse_l2"]["reconstruction ceiling"][lead - 1] == pytest.approx(
            float(rrmse(decoded[days], ev.physical[days])), rel=1e-9)
        assert baselines["rrmse_paper"]["reconstruction ceiling"][lead - 1] == pytest.approx(
            float(rrmse_paper(decoded[days], ev.physical[days])), rel=1e-9)
