"""Downstream evaluation end to end on the micro preset: every task, its files, and determinism."""

import json
import math
import shutil

import pytest
from typer.testing import CliRunner

from sparta.cli import app
from sparta.config import load_config
from sparta.downstream.forecast import LIM_RIDGES, LIM_SETTING
from sparta.evaluation import TASKS, Evaluation, run_tasks
from sparta.evaluation.baselines import forecast_baselines, variable_baselines
from sparta.evaluation.state import EVERY_LEAD, FIELD_KEYS, ROBUSTNESS_RATIOS
from sparta.runs import Run
from sparta.training import Trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory, micro_store) -> Run:
    cfg = load_config("micro", [f"data.store={micro_store.path}"])
    run = Run.create(cfg, tmp_path_factory.mktemp("eval") / "run")
    return Trainer(run, micro_store, progress=False).fit()


@pytest.fixture(scope="module")
def evaluated(trained, micro_store) -> dict:
    return run_tasks(Evaluation(trained, micro_store, progress=False), list(TASKS))


def test_every_task_writes_finite_results(trained, evaluated):
    ds = trained.config.downstream
    assert set(evaluated["forecast"]) == {"LB5_S1", "LB3_S5", LIM_SETTING}
    s5, lim = evaluated["forecast"]["LB3_S5"], evaluated["forecast"][LIM_SETTING]
    assert s5["seeds"] == len(ds.forecast_seeds) and evaluated["forecast"]["LB5_S1"]["seeds"] == lim["seeds"] == 1
    assert lim["ridge"] in LIM_RIDGES and math.isfinite(lim["val_score"]) and lim["spectral_radius"] > 0
    assert lim["baselines"] == evaluated["forecast"]["LB5_S1"]["baselines"]  # the first setting's target days
    assert len(s5["curve"]["rrmse_paper"]) == ds.rollout_steps and list(s5["at"]["rrmse_l2"]) == ["5", "10"]
    assert set(EVERY_LEAD) == {"rrmse_paper", "rrmse_l2"} and set(s5["curve"]) == set(EVERY_LEAD)
    assert set(s5["at"]) == {k + suffix for k in FIELD_KEYS for suffix in ("", "_spread")}
    assert all(list(s5["at"][k]) == ["5", "10"] and all(map(math.isfinite, s5["at"][k].values())) for k in s5["at"])
    assert set(s5["baselines"]) == {"rrmse_paper", "rrmse_l2"}
    for per_name in s5["baselines"].values():
        assert set(per_name) == {"persistence", "climatology", "reconstruction ceiling"}
    channels = ["t2m", "z850", "u850", "v850", "q850"]
    assert set(s5["rrmse_l2_per_channel"]["10"]) == set(channels)
    assert set(FIELD_KEYS) | {"rrmse_l2_per_channel", "rmse", "acc", "climatology"} <= set(evaluated["definitions"])
    assert evaluated["units"] == {"t2m": "K", "z850": "m**2 s**-2", "u850": "m s**-1", "v850": "m s**-1",
                                  "q850": "g kg**-1"}
    # per-variable RMSE and ACC of every model and baseline at every lead step
    for entry in evaluated["forecast"].values():
        for per in (entry["per_variable"], *entry["variable_baselines"].values()):
            for metric in ("rmse", "acc"):
                assert list(per[metric]) == channels
                assert all(len(v) == ds.rollout_steps and all(map(math.isfinite, v)) for v in per[metric].values())
        assert set(entry["variable_baselines"]) == {"persistence", "climatology", "reconstruction ceiling"}
        assert all(-1 <= v <= 1 for v in entry["per_variable"]["acc"]["z850"])
        assert entry["variable_baselines"]["climatology"]["acc"]["t2m"] == [0.0] * ds.rollout_steps
        assert set(entry["variable_baselines"]["persistence"]["rrmse_l2_per_channel"]) == {"5", "10"}
    assert 0 < s5["per_variable"]["rmse"]["q850"][0] < 20  # g/kg, not kg/kg
    assert all(len(v) == ds.rollout_steps for v in s5["per_variable"]["rmse_spread"].values())
    r = evaluated["reconstruction"]
    assert r["hidden"] == list(ROBUSTNESS_RATIOS) and len(r["rrmse_l2"]) == len(ROBUSTNESS_RATIOS)
    assert all(len(r["per_variable"][m][c]) == len(ROBUSTNESS_RATIOS) for m in ("rmse", "acc") for c in channels)
    assert r["climatology"]["per_variable"]["acc"] == dict.fromkeys(channels, 0.0)
    d = evaluated["diffusion"]
    assert d["conditions"] == ds.max_conditions and d["samples"] == ds.diffusion_samples
    assert list(d["per_variable"]["rmse"]) == channels and math.isfinite(d["climatology"]["rrmse_l2"])
    robust = evaluated["robustness"]
    assert robust["chance_accuracy"] == 0.25 and robust["persistence_rrmse_l2"] > 0 < robust["climatology_rrmse_l2"]
    c = evaluated["classify"]
    assert 0 <= c["accuracy"] <= 1 and c["seeds"] == ds.classify_seeds == 3 and 0 <= c["accuracy_spread"] < 1
    days = sum(map(sum, c["confusion"]))  # summed over the seeds' classifiers, each of every inner-test day
    assert days > 0 and days % ds.classify_seeds == 0
    assert evaluated["robustness"]["mask_ratio"] == list(ROBUSTNESS_RATIOS)
    numbers = [d["rrmse_paper"], d["rrmse_l2"], c["cross_entropy"],
               evaluated["smoothness"]["temporal"]["mean"], *evaluated["robustness"]["rrmse_l2"]]
    assert all(math.isfinite(x) for x in numbers)
    lines = (trained.evaluation / "forecast_curves.csv").read_text().splitlines()
    assert lines[0] == "setting,seed,lead,metric,value"
    per_rollout = ((len(EVERY_LEAD) + 2 * len(channels)) * ds.rollout_steps  # + RMSE and ACC per variable
                   + (len(FIELD_KEYS) - len(EVERY_LEAD)) * len(ds.lead_times))
    assert len(lines) == 1 + per_rollout * (2 + len(ds.forecast_seeds))  # SSIM/PSNR at the reported leads only
    for name in ("forecast_error_LB5_S1_T10.png", "diffusion_reconstruction.png", "classification_confusion.png",
                 "temporal_distance.png", "cycle_distance.png", "pca.png", "robustness.png",
                 "forecast_curves_LB5_S1.png", "forecast_curves_LIM.png", "forecast_skill_LB5_S1.png",
                 "forecast_skill_LIM.png", "reconstruction_skill.png", "reconstruction_test_day.png"):
        assert (trained.figures / name).is_file(), name


def test_same_seed_gives_bit_identical_metrics(tmp_path, trained, evaluated, micro_store):
    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy, ignore=shutil.ignore_patterns("evaluation", "figures"))
    again = run_tasks(Evaluation(Run.open(copy), micro_store, progress=False), list(TASKS))
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

    from sparta.metrics import rmse, rrmse, rrmse_paper

    ev = Evaluation(trained, micro_store, progress=False)
    first_target = torch.arange(ev.inner["test"][0] + 3, ev.inner["test"][0] + 9)
    baselines, per_variable = forecast_baselines(ev, first_target), variable_baselines(ev, first_target)
    decoded = ev.frozen.decode(ev.h_clean)
    for lead in (1, 4):
        days = first_target + lead - 1
        assert baselines["rrmse_l2"]["reconstruction ceiling"][lead - 1] == pytest.approx(
            float(rrmse(decoded[days], ev.physical[days])), rel=1e-9)
        assert baselines["rrmse_paper"]["reconstruction ceiling"][lead - 1] == pytest.approx(
            float(rrmse_paper(decoded[days], ev.physical[days])), rel=1e-9)
        assert per_variable["reconstruction ceiling"]["rmse"]["z850"][lead - 1] == pytest.approx(
            float(rmse(decoded[days], ev.physical[days], ev.area_weights)[1]), rel=1e-9)


# ---------------------------------------------------------------- known values: units, days, sets, stds

def _day_latents(ev: Evaluation, offset_t2m: float = 1.0):
    """Latents that name their day (h = day index) and a decoder that returns that day's physical truth plus
    ``offset_t2m`` on t2m: every score then has a hand value, and a misaligned day shows at once."""
    import torch

    n = len(ev.h_clean)
    ev.h_clean = ev.h_masked = torch.arange(n, dtype=torch.float32)[:, None]
    ev.__dict__["mask_draws"] = ev.h_masked[None]
    offset = torch.zeros(1, ev.physical.shape[1], 1, 1)
    offset[:, 0] = offset_t2m
    ev.frozen.decode = lambda h: ev.physical[h[:, 0].round().long()] + offset


# A perfect forecaster scores an infinite PSNR, whose spread over seeds (inf - inf) is NaN: numpy says so.
@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")
def test_forecast_scores_physical_fields_of_the_right_days(tmp_path, trained, micro_store, monkeypatch):
    import numpy as np
    import torch

    import sparta.evaluation.downstream_models as shared
    import sparta.evaluation.forecast as F
    from sparta.climatology import day_of_year, day_of_year_climatology
    from sparta.metrics import acc, lat_weights, psnr_paper, rmse, ssim

    copy = tmp_path / "copy"  # its predictions are of fake latents: not the shared fixture's
    shutil.copytree(trained.path, copy, ignore=shutil.ignore_patterns("evaluation", "figures"))
    ev = Evaluation(Run.open(copy), micro_store, progress=False)
    a, b = micro_store.split_range("test")
    np.testing.assert_array_equal(ev.physical.numpy(), np.asarray(micro_store.read(slice(a, b))))  # physical units
    assert 200 < float(ev.physical[:, 0].mean()) < 330  # t2m in K, not z-scored
    _day_latents(ev)
    calls = []

    def fake_train(ctx, tgt, val_ctx, val_tgt, cfg, seed, progress, draws):
        calls.append((ctx, tgt, val_ctx, val_tgt))
        return None, []

    # a perfect forecaster of day-index latents: the next days after the last context day
    monkeypatch.setattr(shared, "train_forecaster", fake_train)
    monkeypatch.setattr(F, "rollout", lambda model, ctx, steps: ctx[:, -1:] + torch.arange(1, steps + 1)[None, :, None])
    out = F.forecast(ev)["LB5_S1"]
    ctx, tgt, val_ctx, _ = calls[0]
    (ta, _), (va, _), (sa, sb) = ev.inner["train"], ev.inner["val"], ev.inner["test"]
    assert ctx[0].tolist() == list(range(ta, ta + 5)) and float(tgt[0, 0, 0]) == ta + 5  # target: the next day
    assert val_ctx[0].tolist() == list(range(va, va + 5))
    starts = torch.arange(sa, sb - 5 - ev.downstream.rollout_steps + 1)
    n_points = ev.physical[0, 0].numel()
    for lead in range(1, ev.downstream.rollout_steps + 1):
        truth = ev.physical[starts + 5 + lead - 1].double()
        ours = 100 * np.sqrt(len(starts) * n_points * 1.0) / float(truth.pow(2).sum().sqrt())  # 1 K on t2m only
        paper = 100 * np.sqrt(1.0 / truth.shape[1]) / float(truth.mean())
        assert out["curve"]["rrmse_l2"][lead - 1] == pytest.approx(ours, rel=1e-6)  # float32 fields
        assert out["curve"]["rrmse_paper"][lead - 1] == pytest.approx(paper, rel=1e-6)
        if lead in ev.downstream.lead_times:  # the costly scores, at the reported leads only, of the same days
            true = ev.physical[starts + 5 + lead - 1]
            pred = true.clone()
            pred[:, 0] += 1.0
            assert out["at"]["rrmse_l2"][str(lead)] == out["curve"]["rrmse_l2"][lead - 1]
            assert out["at"]["ssim"][str(lead)] == pytest.approx(float(ssim(pred, true)), rel=1e-9)
            assert out["at"]["psnr_paper"][str(lead)] == pytest.approx(float(psnr_paper(pred, true, *ev.train_range)),
                                                                   rel=1e-9)
    persistence = out["baselines"]["rrmse_paper"]["persistence"]["5"]  # the last context day against lead 5
    first = starts + 5
    pers_truth, pers_pred = ev.physical[first + 4].double(), ev.physical[first - 1].double()
    hand = 100 * float((pers_pred - pers_truth).pow(2).mean().sqrt() / pers_truth.mean())
    assert persistence == pytest.approx(hand, rel=1e-9)
    assert out["baselines"]["rrmse_l2"]["reconstruction ceiling"]["5"] == pytest.approx(out["at"]["rrmse_l2"]["5"])
    # per variable: 1 K on t2m only, at every lead; the anomalies of persistence from the TARGET day's climatology
    assert out["per_variable"]["rmse"]["t2m"] == pytest.approx([1.0] * ev.downstream.rollout_steps, rel=1e-6)
    assert out["per_variable"]["rmse"]["z850"] == [0.0] * ev.downstream.rollout_steps
    assert out["per_variable"]["acc"]["q850"] == pytest.approx([1.0] * ev.downstream.rollout_steps)
    weights = lat_weights(torch.as_tensor(micro_store.lat))
    climatology = torch.from_numpy(day_of_year_climatology(micro_store)[day_of_year(ev.times[first + 4]) - 1])
    pers = out["variable_baselines"]["persistence"]
    assert pers["acc"]["z850"][4] == pytest.approx(float(acc(pers_pred, pers_truth, climatology, weights)[1]), rel=1e-9)
    assert pers["rmse"]["q850"][4] == pytest.approx(1e3 * float(rmse(pers_pred, pers_truth, weights)[4]), rel=1e-9)
    assert out["variable_baselines"]["climatology"]["rmse"]["t2m"][4] == pytest.approx(
        float(rmse(climatology, pers_truth, weights)[0]), rel=1e-6)


def test_diffusion_scores_the_right_sets_and_each_std_as_named(tmp_path, trained, micro_store, monkeypatch):
    import numpy as np
    import torch

    import sparta.evaluation.diffusion as D
    from sparta.downstream.diffusion import DiffusionSpace
    from sparta.metrics import latent_density, realism_score, rmse, rrmse

    copy = tmp_path / "copy"  # its predictions are of fake draws: not the shared fixture's
    shutil.copytree(trained.path, copy, ignore=shutil.ignore_patterns("evaluation", "figures"))
    ev = Evaluation(Run.open(copy), micro_store, progress=False)
    ds, seen = ev.downstream, {}
    spread = 0.5 * torch.linspace(-1, 1, ds.diffusion_samples)  # the draws of a condition: its mean +- spread
    shift = torch.linspace(-1, 1, ev.h_clean.shape[1])

    def fake_train(latents, conds, val_latents, val_conds, cfg, seed, progress):
        seen["train"], seen["val"] = (latents, conds), (val_latents, val_conds)
        return None, None, DiffusionSpace.fit(latents, conds, residual=False), []

    def fake_generate(model, schedule, space, conds, n, generator, batch_size, progress):
        seen["conds"], seen["standardizer"] = conds, space.latents
        return (conds + shift)[:, None] + spread[None, :, None]

    monkeypatch.setattr(D, "train_diffusion", fake_train)
    monkeypatch.setattr(D, "generate", fake_generate)
    out = D.diffusion(ev)
    (ta, tb), (va, vb), (sa, sb) = ev.inner["train"], ev.inner["val"], ev.inner["test"]
    assert torch.equal(seen["train"][0], ev.h_clean[ta:tb]) and torch.equal(seen["train"][1], ev.h_masked[ta:tb])
    assert torch.equal(seen["val"][0], ev.h_clean[va:vb])  # targets: complete days; conditions: masked days
    idx = torch.arange(sa, sb)[torch.linspace(0, sb - sa - 1, ds.max_conditions).round().long()]
    assert torch.equal(seen["conds"], ev.h_masked[idx])
    mean, ref = ev.h_masked[idx] + shift, ev.h_clean[sa:sb]
    gen = mean[:, None] + spread[None, :, None]
    # the paper's density and realism score the mean of the draws; ours every draw; the reference: test days
    assert out["density_paper"] == pytest.approx(float(latent_density(mean, ref, ds.density_sigma)))
    assert out["realism_paper"] == pytest.approx(float(realism_score(mean, ref, ds.realism_k)))
    flat = gen.reshape(-1, gen.shape[-1])
    assert out["density_per_draw"] == pytest.approx(float(latent_density(flat, ref, ds.density_sigma)))
    assert out["realism_per_draw"] == pytest.approx(float(realism_score(flat, ref, ds.realism_k)))
    # stds: across the draws of a condition (ours) = std of the spread; of every generated value (paper)
    assert out["latent_std_per_condition"] == pytest.approx(float(spread.std()), rel=1e-5)
    assert out["latent_std_all_samples"] == pytest.approx(float(np.std(gen.numpy().ravel(), ddof=1)), rel=1e-5)
    st = seen["standardizer"]
    assert out["latent_std_per_condition_standardised"] == pytest.approx(float((spread.std() / st.std).mean()),
                                                                         rel=1e-5)
    assert out["rrmse_l2"] == pytest.approx(float(rrmse(ev.frozen.decode(mean), ev.physical[idx])))
    assert out["per_variable"]["rmse"]["u850"] == pytest.approx(
        float(rmse(ev.frozen.decode(mean), ev.physical[idx], ev.area_weights)[2]))
    assert out["climatology"]["rrmse_l2"] == pytest.approx(float(rrmse(ev.climatology[idx], ev.physical[idx])))
    assert set(out["climatology"]["per_variable"]["acc"].values()) == {0.0}


def test_reconstruction_scores_each_hidden_fraction_of_the_inner_test_days(tmp_path, trained, micro_store):
    import numpy as np

    from sparta.evaluation.reconstruction import reconstruction
    from sparta.metrics import rmse, rrmse

    copy = tmp_path / "copy"  # the maps go to the run directory: not the shared fixture's
    shutil.copytree(trained.path, copy, ignore=shutil.ignore_patterns("evaluation", "figures"))
    ev = Evaluation(Run.open(copy), micro_store, progress=False)
    _day_latents(ev, offset_t2m=2.0)
    a, b = ev.inner["test"]
    asked = []
    ev.inner_test_latents = lambda hidden: asked.append(hidden) or ev.h_clean[a:b]
    out = reconstruction(ev)
    assert asked == list(ROBUSTNESS_RATIOS[1:])  # complete: the complete-day latents themselves
    truth = ev.physical[a:b]
    assert out["per_variable"]["rmse"]["t2m"] == pytest.approx([2.0] * len(ROBUSTNESS_RATIOS), rel=1e-6)
    assert out["per_variable"]["rmse"]["q850"] == [0.0] * len(ROBUSTNESS_RATIOS)
    assert out["per_variable"]["acc"]["z850"] == pytest.approx([1.0] * len(ROBUSTNESS_RATIOS))
    assert out["rrmse_l2"][0] == pytest.approx(float(rrmse(ev.frozen.decode(ev.h_clean[a:b]), truth)))
    climatology = out["climatology"]["per_variable"]
    assert climatology["rmse"]["q850"] == pytest.approx(
        1e3 * float(rmse(ev.climatology[a:b], truth, ev.area_weights)[4]))  # g/kg
    with np.load(copy / "evaluation" / "maps" / "reconstruction_test_day.npz") as maps:
        day = (b - a) // 2
        assert np.allclose(maps["0/truth"][4], 1e3 * truth[day, 4].numpy())  # q850 shown in g/kg
        assert np.allclose(maps["0/hidden"][0], truth[day, 0].numpy() + 2.0)


def test_rescore_scores_the_saved_predictions_with_a_metric_added_later(tmp_path, trained, evaluated, micro_store,
                                                                        monkeypatch):
    """`sparta evaluate --rescore` reads the saved reconstructions, runs no model, reproduces every score bit for
    bit, and scores a metric registered after the evaluation (here the mean error, a toy bias) in metrics.json,
    the scores file and the tables."""
    import numpy as np
    import torch
    import xarray as xr

    from sparta import metrics
    from sparta.inference import FrozenModel

    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    bias = metrics.VariableMetric(
        "bias", "mean error per variable", True,
        lambda pred, true, clim, w: metrics._each_grid(
            lambda p, t, w: metrics.area_mean(p.double() - t.double(), w), pred, true, w),
        lambda days: days.mean(0), True)
    monkeypatch.setitem(metrics.VARIABLE_METRICS, "bias", bias)
    for name in ("encode", "decode"):
        monkeypatch.setattr(FrozenModel, name, lambda *a, **k: pytest.fail("rescoring ran the model"))
    result = CliRunner().invoke(app, ["evaluate", str(copy), "--rescore", "--tasks", "reconstruction",
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    rescored = json.loads((copy / "evaluation" / "metrics.json").read_text())
    before, after = evaluated["reconstruction"], rescored["reconstruction"]

    def without_bias(block: dict) -> dict:
        return {k: without_bias(v) if isinstance(v, dict) else v for k, v in block.items() if k != "bias"}
    assert without_bias(after) == before
    assert rescored["forecast"] == evaluated["forecast"]  # tasks not rescored are left as they were
    saved = xr.open_zarr(copy / "evaluation" / "predictions" / "reconstruction.zarr", consolidated=False)
    days = np.searchsorted(micro_store.times.astype("datetime64[ns]"), saved["time"].values)
    error = saved["t2m"].sel(hidden=0.9).values - micro_store.read(days)[:, 0]  # t2m: channel 0
    expected = float(metrics.area_mean(torch.from_numpy(error), metrics.lat_weights(torch.as_tensor(micro_store.lat)))
                     .mean())
    assert saved["t2m"].attrs["units"] == "K"
    assert after["per_variable"]["bias"]["t2m"][after["hidden"].index(0.9)] == pytest.approx(expected, rel=1e-9)
    scores = xr.open_dataset(copy / "evaluation" / "scores" / "reconstruction.nc")
    assert scores["bias"].dims == ("model", "hidden", "variable")
    assert float(scores["bias"].sel(model="climatology", hidden=0.0, variable="t2m")) == \
        after["climatology"]["per_variable"]["bias"]["t2m"]
    assert "Decoded test days, bias per variable" in result.output


def test_rescored_forecasts_equal_the_evaluated_ones_and_train_nothing(tmp_path, trained, evaluated, monkeypatch):
    import sparta.evaluation.downstream_models as shared

    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    curves = (copy / "evaluation" / "forecast_curves.csv").read_text()
    for name in ("train_forecaster", "train_linear_forecaster"):
        monkeypatch.setattr(shared, name, lambda *a, **k: pytest.fail("rescoring trained a forecaster"))
    result = CliRunner().invoke(app, ["evaluate", str(copy), "--rescore", "--tasks", "forecast", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((copy / "evaluation" / "metrics.json").read_text())["forecast"] == evaluated["forecast"]
    assert (copy / "evaluation" / "forecast_curves.csv").read_text() == curves


def test_rescored_classifications_equal_the_evaluated_ones(tmp_path, trained, evaluated, monkeypatch):
    import sparta.evaluation.downstream_models as shared

    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    monkeypatch.setattr(shared, "train_classifier", lambda *a, **k: pytest.fail("rescoring trained a classifier"))
    result = CliRunner().invoke(app, ["evaluate", str(copy), "--rescore", "--tasks", "classify", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((copy / "evaluation" / "metrics.json").read_text())["classify"] == evaluated["classify"]


def test_rescored_diffusion_equals_the_evaluated_one_without_the_denoiser_or_the_encoder(tmp_path, trained, evaluated,
                                                                                        monkeypatch):
    import sparta.evaluation.diffusion as D
    from sparta.inference import FrozenModel

    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    for name in ("train_diffusion", "generate"):
        monkeypatch.setattr(D, name, lambda *a, **k: pytest.fail("rescoring ran the diffusion model"))
    monkeypatch.setattr(FrozenModel, "encode", lambda *a, **k: pytest.fail("rescoring encoded the test days"))
    result = CliRunner().invoke(app, ["evaluate", str(copy), "--rescore", "--tasks", "diffusion", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((copy / "evaluation" / "metrics.json").read_text())["diffusion"] == evaluated["diffusion"]


def test_rescore_refuses_a_task_that_keeps_no_predictions(trained):
    result = CliRunner().invoke(app, ["evaluate", str(trained.path), "--rescore", "--tasks", "robustness"])
    assert result.exit_code != 0 and "robustness keep no predictions to score again" in result.output


def test_forecast_mask_draws_are_independent_masks_of_every_day(trained, micro_store):
    import torch

    ev = Evaluation(trained, micro_store, progress=False)
    draws = ev.mask_draws
    assert draws.shape == (ev.downstream.forecast_mask_draws, *ev.h_masked.shape)
    assert torch.equal(draws[0], ev.h_masked) and not torch.allclose(draws[1], draws[0])
    assert not torch.allclose(draws[1], ev.h_clean)  # masked, not complete


def test_robustness_alone_equals_robustness_after_the_other_tasks(tmp_path, trained, evaluated, micro_store):
    """No task depends on state another left: robustness trains (or reuses) the same seeded models itself."""
    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy, ignore=shutil.ignore_patterns("evaluation", "figures"))
    alone = run_tasks(Evaluation(Run.open(copy), micro_store, progress=False), ["robustness"])
    assert alone["robustness"] == evaluated["robustness"]
    assert "forecast" not in alone and "classify" not in alone


def test_figures_are_redrawn_from_saved_results_alone(tmp_path, trained, evaluated):
    from sparta.evaluation import draw_figures

    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy, ignore=shutil.ignore_patterns("figures"))
    draw_figures(Run.open(copy))
    drawn = {p.name for p in (copy / "figures").glob("*.png")}
    assert drawn == {p.name for p in trained.figures.glob("*.png")
                     if not p.name.startswith(("loss_", "adjacency"))}, drawn


# ---------------------------------------------------------------- the report in a browser

PAGE_CHECK = """(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(i => i.decode().catch(() => null)));
  return {broken: images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
          images: images.length, tables: document.querySelectorAll('table').length,
          headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
          text: document.body.innerText};
})()"""
"""What a test reads of a page: the images that did not load, the numbers of images and tables, the headings and
the text."""


def test_report_html_renders_offline_in_headless_chromium(tmp_path, trained, evaluated):
    """The report of a micro run, opened in headless Chromium: every image loads, nothing is fetched from the
    network, and the page has the verdict, its figures and tables."""
    from browser import chromium, load_page

    from sparta.report import build_report

    executable = chromium()
    if executable is None:
        pytest.skip("needs Chromium on the PATH (Debian: apt-get install chromium)")
    out = tmp_path / "grid"
    for name in ("sparta", "autoencoder"):  # one micro run as two variants: the comparison sections need two rows
        shutil.copytree(trained.path, out / name)
    _, page = build_report(out)
    found, urls = load_page(page, PAGE_CHECK, executable)
    assert urls and all(url.startswith(("file:", "data:image/png;base64,")) for url in urls), urls[:5]
    assert found["broken"] == [] and found["images"] >= 10
    assert found["headings"][0] == "Verdict" and "Robustness to sparsity (beyond the paper)" in found["headings"]
    assert found["tables"] >= 10
    text = found["text"]
    assert text.index("Reconstruction: from complete input") < text.index("held-back test day") < text.index(
        "How to read this report") < text.index("Autoregressive RRMSE")  # verdict, test days, then the details
    assert "Forecasts by ACC: days of useful skill" in text
    assert "Forecast RMSE per variable (WeatherBench2" in text and "q850 (g kg**-1)" in text


def test_the_browser_check_sees_network_requests_and_broken_images(tmp_path):
    """The check above would fail a page that fetches from the network or shows a broken image."""
    from browser import chromium, load_page

    executable = chromium()
    if executable is None:
        pytest.skip("needs Chromium on the PATH (Debian: apt-get install chromium)")
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><body><h2>x</h2><img src='http://192.0.2.1/remote.png' alt='remote'>"
                    "<img src='missing.png' alt='missing'></body></html>")
    found, urls = load_page(page, PAGE_CHECK, executable)
    assert "http://192.0.2.1/remote.png" in urls
    assert sorted(found["broken"]) == ["missing", "remote"] and found["headings"] == ["x"]
