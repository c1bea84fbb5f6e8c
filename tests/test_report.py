"""Tables and report from fixture metrics; the grid runner on the micro preset."""

import json

import numpy as np
import pytest

from sparta.report import SECTIONS, VARIANTS, build_report, relative_improvements
from sparta.downstream.forecast import LIM_SETTING
from sparta.tables import (
    channel_table,
    downstream_table,
    forecast_settings,
    forecast_table,
    paper_tables,
    smoothness_table,
)


def fake_results(scale: float, seeds: int = 1) -> dict:
    """Metrics in the layout Evaluation writes; every error scales with ``scale``."""
    leads = ["25", "50"]
    values = {"rrmse_paper": 5 * scale, "rrmse_l2": 10 * scale, "ssim": 0.5 / scale, "psnr": 20 / scale}
    forecast = {
        "LB30_S1": {"seeds": 1, "curve": {m: [v] * 50 for m, v in values.items()},
                    "at": {m: {t: v for t in leads} for m, v in values.items()}
                    | {f"{m}_spread": {t: 0.0 for t in leads} for m in values},
                    "rrmse_l2_per_channel": {t: {"t2m": scale, "u850": 40 * scale} for t in leads},
                    "baselines": {f: {"persistence": {t: 30.0 / k for t in leads},
                                      "climatology": {t: 20.0 / k for t in leads}}
                                  for f, k in (("rrmse_paper", 2), ("rrmse_l2", 1))}},
    }
    return {
        "source": "synthetic(test)", "preset": "micro", "method": "sparta", "fusion": "early",
        "forecast": forecast,
        "diffusion": {"rrmse_paper": 6 * scale, "rrmse_l2": 12 * scale, "density_paper": 0.9 / scale,
                      "realism_paper": 1.0 / scale, "latent_std_all_samples": 0.5 * scale,
                      "density_per_draw": 0.8 / scale, "realism_per_draw": 0.9 / scale,
                      "latent_std_per_condition": 0.2 * scale, "density_per_draw_standardised": 0.5,
                      "realism_per_draw_standardised": 0.5, "latent_std_per_condition_standardised": 0.4 * scale,
                      "ssim": 0.5, "psnr": 20.0},
        "classify": {"cross_entropy": 0.2 * scale, "accuracy": 0.9 / scale, "confusion": [[1, 0], [0, 1]]},
        "smoothness": {k: {"mean": scale, "std": 0.1} for k in ("temporal", "cycle", "temporal_normalised",
                                                                "cycle_normalised")},
    }


def test_forecast_table_rows_columns_and_best_marks():
    table = forecast_table({"A": fake_results(1.0), "B": fake_results(2.0)}, "LB30_S1", "rrmse_l2")
    assert table.header == ["T=25", "T=50"]
    assert list(table.rows) == ["A", "B", "persistence (baseline)", "climatology (baseline)"]
    assert table.rows["A"] == ["10.00", "10.00"] and table.best["A"] == [True, True]
    assert not any(table.best["B"]) and table.rows["persistence (baseline)"] == ["30.00", "30.00"]
    md = table.markdown()
    assert "| A | **10.00** | **10.00** |" in md and "look-back 30, sampling interval 1" in md
    assert "RRMSE (L2, ours, %)" in table.title


def test_linear_inverse_model_tables_name_the_model():
    results = {}
    for label, scale in (("A", 1.0), ("B", 2.0)):
        res = fake_results(scale)
        res["forecast"][LIM_SETTING] = res["forecast"]["LB30_S1"] | {"ridge": 1.0, "spectral_radius": 0.99}
        results[label] = res
    assert forecast_settings(results) == ["LB30_S1", LIM_SETTING]
    table, channels = forecast_table(results, LIM_SETTING, "rrmse_l2"), channel_table(results, LIM_SETTING)
    assert "linear inverse model" in table.title and "linear inverse model" in channels.title
    assert table.rows["A"] == ["10.00", "10.00"] and table.best["A"] == [True, True]


def test_paper_tables_use_the_paper_formula_and_name_both():
    results = {"A": fake_results(1.0), "B": fake_results(2.0)}
    paper = forecast_table(results, "LB30_S1")  # the default: the paper's formula, its baselines too
    assert "RRMSE (paper formula, %)" in paper.title
    assert paper.rows["A"] == ["5.00", "5.00"] and paper.rows["persistence (baseline)"] == ["15.00", "15.00"]
    titles = [t.title for t in paper_tables(results, per_channel=True)]
    assert [t.split(" - ")[0] for t in titles[:2]] == ["Autoregressive RRMSE (paper formula, %)",
                                                      "Autoregressive RRMSE (L2, ours, %)"]
    channels = channel_table(results, "LB30_S1")
    assert channels.header == ["t2m", "u850"] and channels.rows["B, T=50"] == ["2.00", "80.00"]
    assert "L2, ours" in channels.title and "near 0 for u850 and v850" in channels.title
    diffusion = downstream_table(results)
    named = dict(zip(diffusion.header, diffusion.rows["A"]))
    assert diffusion.header[:4] == ["Diffusion RRMSE (paper formula, %)", "Latent density (paper: mean of draws)",
                                    "Realism (paper: mean of draws)", "Std dev (paper: all generated values)"]
    assert (named["Diffusion RRMSE (paper formula, %)"], named["Diffusion RRMSE (L2, ours, %)"]) == ("6.00", "12.00")
    assert named["Std dev (paper: all generated values)"] == "0.5000" and named["Std across draws (ours)"] == "0.2000"
    assert (named["Latent density (paper: mean of draws)"], named["Latent density (ours: every draw)"]) == (
        "0.900", "0.800")


def test_tables_read_metrics_written_before_the_two_formulas():
    old = fake_results(1.0)
    entry = old["forecast"]["LB30_S1"]
    entry["at"] = {"rrmse": entry["at"]["rrmse_l2"]}
    entry["baselines"] = entry["baselines"]["rrmse_l2"]
    table = forecast_table({"A": old}, "LB30_S1", "rrmse_l2")
    assert table.rows["A"] == ["10.00", "10.00"] and table.rows["persistence (baseline)"] == ["30.00", "30.00"]
    assert forecast_table({"A": old}, "LB30_S1").rows == {}  # no paper-formula numbers: an empty table, no error


def test_each_model_keeps_its_own_reconstruction_ceiling():
    results = {"A": fake_results(1.0), "B": fake_results(2.0)}
    for label, ceiling in (("A", 5.0), ("B", 8.0)):
        results[label]["forecast"]["LB30_S1"]["baselines"]["rrmse_paper"]["reconstruction ceiling"] = {
            "25": ceiling, "50": ceiling}
    table = forecast_table(results, "LB30_S1")
    assert list(table.rows)[2:] == ["persistence (baseline)", "climatology (baseline)",
                                    "A: reconstruction ceiling", "B: reconstruction ceiling"]
    assert table.rows["A: reconstruction ceiling"] == ["5.00", "5.00"]
    assert table.rows["B: reconstruction ceiling"] == ["8.00", "8.00"]


def test_higher_is_better_columns_and_single_rows():
    table = downstream_table({"A": fake_results(1.0), "B": fake_results(2.0)})
    cols = dict(zip(table.header, zip(table.best["A"], table.best["B"])))
    assert cols["Diffusion RRMSE (paper formula, %)"] == (True, False)
    assert cols["Latent density (paper: mean of draws)"] == (True, False)
    assert cols["Std dev (paper: all generated values)"] == (True, False)
    assert cols["Class. accuracy"] == (True, False) and cols["Class. test loss"] == (True, False)
    alone = smoothness_table({"A": fake_results(1.0)})
    assert not any(alone.best["A"])  # nothing to compare against: no marks
    assert alone.rows["A"][0] == "1.00 ± 0.10"
    assert "<b>" in downstream_table({"A": fake_results(1.0), "B": fake_results(2.0)}).html()


def test_downstream_table_lays_out_the_columns_each_task_declares():
    """A task with scalar results declares its columns in its TASKS entry; the table needs no change for it."""
    from sparta.evaluate import TASKS, Task
    from sparta.tables import Column

    extra = Task("extremes", lambda ev: {}, lambda run, res, label: None, "extremes", "extreme-event detection",
                 (Column("Hit rate (paper)", "hits", "max", 2, paper=True), Column("False alarms (ours)", "false",
                                                                                   "min", 3)), "extreme events")
    results = {"A": {"extremes": {"hits": 0.5, "false": 0.25}}, "B": {"extremes": {"hits": 0.75, "false": 0.5}}}
    (table,) = paper_tables(results, tasks=[*TASKS.values(), extra])
    assert table.title == ("Conditional latent diffusion, latent classification and extreme events (the paper's "
                           "columns first, then ours)")
    assert table.header[4:6] == ["Class. test loss", "Hit rate (paper)"] and table.header[-1] == "False alarms (ours)"
    assert table.rows["A"][5] == "0.50" and table.rows["A"][-1] == "0.250" and table.rows["A"][0] == "–"
    assert table.best["B"][5] and table.best["A"][-1]


def test_relative_improvement_line():
    lines = relative_improvements(fake_results(1.0), fake_results(2.0))
    assert lines[0] == "Forecast RRMSE (paper formula) reduction, LB30_S1: T=25: +50.0%, T=50: +50.0%"
    assert lines[1].startswith("Forecast RRMSE (L2, ours) reduction, LB30_S1")
    assert "Std dev (paper: all generated values) reduction +50.0%" in lines[2] and "accuracy 90.0% vs 45.0%" in lines[3]


def test_report_from_saved_metrics(tmp_path):
    for i, name in enumerate(VARIANTS):
        evaluation = tmp_path / name / "evaluation"
        evaluation.mkdir(parents=True)
        (evaluation / "metrics.json").write_text(json.dumps(fake_results(1.0 + i)))
        np.save(evaluation / "smoothness_latents.npy", np.random.default_rng(i).normal(size=(20, 8)))
    md, page = build_report(tmp_path)
    text = md.read_text()
    for title, _ in SECTIONS:
        assert f"## {title}" in text
    assert text.count("Autoregressive RRMSE (paper formula, %)") == 3 and text.count("Smoothness metrics") == 3
    assert text.count("Autoregressive RRMSE (L2, ours, %)") == 3 and text.count("per channel, look-back") == 3
    assert "| SPARTA - Late-Fusion, GNN |" in text and "Forecast RRMSE (paper formula) reduction" in text
    assert "| EOF/PCA (linear) |" in text and "SPARTA vs EOF/PCA (linear): Forecast RRMSE (paper" in text
    html = page.read_text()
    assert html.count("<table>") == 15 and "data:image/png;base64," in html and "src='report_figures" not in html


def test_report_states_decoder_skill_and_flags_a_mean_field_decoder(tmp_path):
    skill = {"sparta": ("0.62", "0.71"), "autoencoder": ("1.04", "0.02")}
    for name, (ratio, eddy) in skill.items():
        (tmp_path / name / "evaluation").mkdir(parents=True)
        (tmp_path / name / "evaluation" / "metrics.json").write_text(json.dumps(fake_results(1.0)))
        (tmp_path / name / "metrics.csv").write_text(
            "stage,epoch,val_total,skill_rrmse_vs_climatology,skill_eddy_r_mean\n"
            f"x,1,1.0,9.9,0.0\nx,2,1.0,{ratio},{eddy}\nx,3,1.0,,\n")  # the last logged skill counts
    text = build_report(tmp_path)[0].read_text()
    assert "SPARTA - Early-Fusion HN + Cycle 0.62x, eddy r 0.71" in text and "Autoencoder 1.04x, eddy r 0.02" in text
    assert "the decoder of Autoencoder is no better than climatology" in text
    assert "the decoder of SPARTA" not in text


def test_report_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no evaluated variants"):
        build_report(tmp_path)
