"""Tables and report from fixture metrics; the grid runner on the micro preset."""

import json

import numpy as np
import pytest

from sparta.report import (
    SECTIONS,
    VARIANTS,
    build_report,
    forecast_headline,
    forecast_verdict,
    reconstruction_verdict,
    skill_run,
    useful_days,
    lead_ranges,
    relative_improvements,
    seed_spread_lines,
    which_is_better,
    winning_leads,
)
from sparta.downstream.forecast import LIM_SETTING
from sparta.tables import (
    channel_table,
    diffusion_variable_table,
    downstream_table,
    forecast_settings,
    forecast_table,
    paper_tables,
    reconstruction_tables,
    smoothness_table,
    variable_table,
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
    per_variable = {"rmse": {"t2m": [scale] * 50, "q850": [0.5 * scale] * 50},
                    "acc": {"t2m": [0.9 / scale] * 50, "q850": [0.8 / scale] * 50}}
    forecast["LB30_S1"]["per_variable"] = {**per_variable, "rmse_spread": {"t2m": [0.0] * 50, "q850": [0.0] * 50},
                                           "acc_spread": {"t2m": [0.0] * 50, "q850": [0.0] * 50}}
    forecast["LB30_S1"]["variable_baselines"] = {  # persistence: better than A at leads 1-10 only
        "persistence": {"rmse": {"t2m": [0.5] * 10 + [3.0] * 40, "q850": [3.0] * 50},
                        "acc": {"t2m": [0.95] * 10 + [0.2] * 40, "q850": [0.1] * 50},
                        "rrmse_l2_per_channel": {t: {"t2m": 0.5, "u850": 45.0} for t in leads}},
        "climatology": {"rmse": {"t2m": [2.0] * 50, "q850": [1.0] * 50}, "acc": {"t2m": [0.0] * 50, "q850": [0.0] * 50},
                        "rrmse_l2_per_channel": {t: {"t2m": 2.0, "u850": 50.0} for t in leads}},
        "reconstruction ceiling": {"rmse": {"t2m": [0.1] * 50, "q850": [0.1] * 50},
                                   "acc": {"t2m": [0.99] * 50, "q850": [0.99] * 50}}}
    climatology = {"rrmse_paper": 8.0, "rrmse_l2": 4.0, "ssim": 0.3, "psnr": 15.0,
                   "per_variable": {"rmse": {"t2m": 2.5, "q850": 1.0}, "acc": {"t2m": 0.0, "q850": 0.0}}}
    return {
        "source": "synthetic(test)", "preset": "micro", "method": "sparta", "fusion": "early",
        "units": {"t2m": "K", "q850": "g kg**-1"},
        "forecast": forecast,
        "reconstruction": {"hidden": [0.0, 0.7, 0.9], "rrmse_paper": [2 * scale, 4 * scale, 6 * scale],
                           "rrmse_l2": [scale, 2 * scale, 3 * scale],
                           "per_variable": {"rmse": {"t2m": [scale, 2 * scale, 3 * scale], "q850": [0.2, 0.3, 0.4]},
                                            "acc": {"t2m": [0.9, 0.8, 0.7], "q850": [0.9, 0.8, 0.7]}},
                           "climatology": climatology},
        "diffusion": {"rrmse_paper": 6 * scale, "rrmse_l2": 12 * scale, "density_paper": 0.9 / scale,
                      "realism_paper": 1.0 / scale, "latent_std_all_samples": 0.5 * scale,
                      "density_per_draw": 0.8 / scale, "realism_per_draw": 0.9 / scale,
                      "latent_std_per_condition": 0.2 * scale, "density_per_draw_standardised": 0.5,
                      "realism_per_draw_standardised": 0.5, "latent_std_per_condition_standardised": 0.4 * scale,
                      "ssim": 0.5, "psnr": 20.0, "per_variable": {m: {c: v[0] for c, v in per.items()}
                                                                   for m, per in per_variable.items()},
                      "climatology": climatology},
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


def test_task_columns_name_the_field_scores_as_the_metrics_registry_does():
    from sparta.metrics import FIELD_METRICS
    from sparta.tasks import DIFFUSION_COLUMNS

    for column in DIFFUSION_COLUMNS:
        if column.key in FIELD_METRICS:
            metric = FIELD_METRICS[column.key]
            assert column.header == f"Diffusion {metric.table_name}" and column.paper == (column.key == "rrmse_paper")
            assert column.better == ("min" if metric.lower_is_better else "max")


def test_downstream_table_lays_out_the_columns_each_task_declares():
    """A task with scalar results declares its columns in its TASK_SPECS entry; the table needs no change for it."""
    from sparta.tasks import TASK_SPECS, Column, TaskSpec

    extra = TaskSpec("extremes", "extremes", "extreme-event detection",
                 (Column("Hit rate (paper)", "hits", "max", 2, paper=True), Column("False alarms (ours)", "false",
                                                                                   "min", 3)), "extreme events")
    results = {"A": {"extremes": {"hits": 0.5, "false": 0.25}}, "B": {"extremes": {"hits": 0.75, "false": 0.5}}}
    (table,) = paper_tables(results, tasks=[*TASK_SPECS.values(), extra])
    assert table.title == ("Conditional latent diffusion, latent classification and extreme events (the paper's "
                           "columns first, then ours)")
    assert table.header[4:6] == ["Class. test loss", "Hit rate (paper)"] and table.header[-1] == "False alarms (ours)"
    assert table.rows["A"][5] == "0.50" and table.rows["A"][-1] == "0.250" and table.rows["A"][0] == "–"
    assert table.best["B"][5] and table.best["A"][-1]


def test_relative_improvement_lines_say_which_model_is_better():
    lines = relative_improvements(fake_results(1.0), fake_results(2.0), "SPARTA", "the autoencoder")
    assert lines[0] == ("Forecast RRMSE (paper formula), LB30_S1: T=25: SPARTA better (5 against 10 for the "
                        "autoencoder, 50.0% lower); T=50: SPARTA better (5 against 10 for the autoencoder, "
                        "50.0% lower)")
    assert lines[1].startswith("Forecast RRMSE (L2, ours), LB30_S1")
    assert "Std dev (paper: all generated values): SPARTA better (0.5 against 1 for the autoencoder" in lines[2]
    assert "accuracy 90.0% (SPARTA) vs 45.0% (the autoencoder), chance 50%" in lines[3]
    worse = relative_improvements(fake_results(2.0), fake_results(1.0), "SPARTA", "the autoencoder")
    assert worse[0].startswith("Forecast RRMSE (paper formula), LB30_S1: T=25: the autoencoder better (5 against 10 "
                               "for SPARTA, 50.0% lower)")
    assert which_is_better("A", 0.9, "B", 0.6, lower_is_better=False) == ("A better (0.9 against 0.6 for B, "
                                                                          "50.0% higher)")
    assert which_is_better("A", 1.0, "B", 1.0) == "A and B equal"


def test_best_marks_the_best_forecast_never_a_ceiling():
    """Persistence beating every model is marked; a reconstruction ceiling, lower still, is not a forecast."""
    results = {"A": fake_results(1.0), "B": fake_results(2.0)}
    for label in results:
        results[label]["forecast"]["LB30_S1"]["baselines"]["rrmse_l2"]["reconstruction ceiling"] = {"25": 1.0, "50": 1.0}
    results["A"]["forecast"]["LB30_S1"]["baselines"]["rrmse_l2"]["persistence"] = {"25": 5.0, "50": 50.0}
    table = forecast_table(results, "LB30_S1", "rrmse_l2")
    assert table.best["persistence (baseline)"] == [True, False] and table.best["A"] == [False, True]
    assert not any(table.best["A: reconstruction ceiling"]) and "a ceiling is not a forecast" in table.title


def test_variable_tables_put_every_model_beside_persistence_and_climatology():
    results = {"A": fake_results(1.0), "B": fake_results(2.0)}
    rmse, acc = variable_table(results, "LB30_S1", "rmse"), variable_table(results, "LB30_S1", "acc")
    assert rmse.header == ["t2m (K)", "q850 (g kg**-1)"] and acc.header == ["t2m", "q850"]
    assert list(rmse.rows) == ["A, T=25", "B, T=25", "persistence (baseline), T=25", "climatology (baseline), T=25",
                               "A, T=50", "B, T=50", "persistence (baseline), T=50", "climatology (baseline), T=50"]
    assert rmse.rows["A, T=25"] == ["1.00", "0.500"] and rmse.best["A, T=25"] == [True, True]
    assert rmse.rows["climatology (baseline), T=50"] == ["2.00", "1.000"] and not any(rmse.best["B, T=50"])
    assert acc.rows["climatology (baseline), T=25"] == ["0.000", "0.000"] and acc.best["A, T=25"] == [True, True]
    assert "WeatherBench2" in rmse.title and "RMSE" in rmse.title and "ACC" in acc.title


def test_reconstruction_and_diffusion_tables_have_the_climatology():
    results = {"A": fake_results(1.0), "B": fake_results(2.0)}
    paper, ours, rmse, acc = reconstruction_tables(results)
    assert paper.header == ["0% hidden", "70% hidden", "90% hidden"]
    assert paper.rows["climatology (baseline)"] == ["8.00"] * 3 and paper.best["A"] == [True, True, True]
    assert ours.rows["B"] == ["2.00", "4.00", "6.00"] and ours.rows["climatology (baseline)"] == ["4.00"] * 3
    assert list(rmse.rows)[:3] == ["A, complete input", "B, complete input", "climatology (baseline), complete input"]
    assert rmse.rows["climatology (baseline), 90% hidden"] == ["2.50", "1.000"]
    assert rmse.best["climatology (baseline), 90% hidden"] == [True, False]  # 2.5 K beats B's 6 K and A's 3 K
    diffusion = diffusion_variable_table(results)
    assert diffusion.header == ["t2m (K) RMSE", "q850 (g kg**-1) RMSE", "t2m ACC", "q850 ACC"]
    assert diffusion.rows["climatology (baseline)"] == ["2.50", "1.000", "0.000", "0.000"]
    table = downstream_table(results)
    named = dict(zip(table.header, table.rows["climatology (baseline)"]))
    assert named["Diffusion RRMSE (L2, ours, %)"] == "4.00" and named["Latent density (paper: mean of draws)"] == "–"
    results["A"]["classify"]["accuracy_spread"] = 0.05  # the std over classifier seeds, beside the mean
    assert dict(zip(table.header, downstream_table(results).rows["A"]))["Class. accuracy"] == "0.900 ± 0.050"
    chance = dict(zip(table.header, table.rows["chance (baseline)"]))
    assert chance["Class. accuracy"] == "0.500" and chance["Class. test loss"] == "0.6931"  # 2 classes: ln 2
    assert "baselines on the same days: climatology, chance" in table.title


def test_channel_table_has_persistence_and_climatology_per_lead():
    table = channel_table({"A": fake_results(1.0), "B": fake_results(2.0)}, "LB30_S1")
    assert list(table.rows)[:4] == ["A, T=25", "B, T=25", "persistence (baseline), T=25", "climatology (baseline), T=25"]
    assert table.rows["persistence (baseline), T=50"] == ["0.50", "45.00"]
    assert table.best["persistence (baseline), T=25"] == [True, False] and table.best["A, T=25"] == [False, True]


def test_verdict_leads_and_seed_spread():
    assert lead_ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10" and lead_ranges([]) == "none"
    assert winning_leads([1.0, 2.0, 3.0], [2.0, 2.0, 2.0], True) == [1]
    assert winning_leads([0.5, 0.9], [0.6, 0.8], False) == [2]
    assert skill_run([2, 3, 4, 9, 10]) == "2-4 (+2 later)" and skill_run([5]) == "5" and skill_run([]) == "never"
    assert useful_days([0.9, 0.7, 0.5, 0.8]) == 2 and useful_days([0.7] * 3) == 3 and useful_days([0.1]) == 0
    results = {"A": fake_results(1.0), "B": fake_results(2.0)}
    rmse = forecast_verdict(results, "rmse")
    assert rmse.header == ["t2m", "q850"]
    assert rmse.rows["A, LB30_S1"] == ["P 11-50 · C 1-50", "P 1-50 · C 1-50"]
    assert rmse.rows["B, LB30_S1"][0] == "P 11-50 · C never"  # a tie is no win
    acc = forecast_verdict(results, "acc")  # persistence: ACC 0.95 at leads 1-10, then 0.2 (t2m); 0.1 (q850)
    assert acc.rows["A, LB30_S1"] == ["50 (P 10) · never beats P", "50 (P 0) · beats P on days 1-10"]
    assert acc.rows["B, LB30_S1"][0] == "0 (P 10) · never beats P"  # ACC 0.45: never useful; wins after day 10 unread
    assert seed_spread_lines(results) == []  # one seed: no spread to compare with
    for label, (mean, spread) in (("A", (10.0, 0.5)), ("B", (10.8, 0.5))):
        entry = results[label]["forecast"]["LB30_S1"]
        entry["seeds"] = 3
        entry["at"]["rrmse_l2"] = {"25": mean, "50": mean + (3.0 if label == "B" else 0.0)}
        entry["at"]["rrmse_l2_spread"] = {"25": spread, "50": spread}
    (line,) = seed_spread_lines(results)
    assert line.startswith("Forecast LB30_S1, RRMSE (L2, ours, %) over 3 seeds: T=25: A best (10.00 ± 0.50), within "
                           "the seed spread of the runner-up B (10.80 ± 0.50); T=50: A best (10.00 ± 0.50), more than")


def test_forecast_headline_names_the_best_and_what_it_does_not_beat():
    results = {"A": fake_results(1.0), "B": fake_results(0.5)}
    for r in results.values():  # leads 1 and 10 only; persistence 30 and climatology 20 (fake_results)
        entry = r["forecast"]["LB30_S1"]
        entry["at"]["rrmse_l2"] = {"1": entry["at"]["rrmse_l2"]["25"], "10": 25.0}
        entry["baselines"]["rrmse_l2"] = {b: {"1": v["25"], "10": v["25"]} for b, v in entry["baselines"]["rrmse_l2"].items()}
    assert forecast_headline(results) == ("Best forecast by RRMSE (L2): T=1: B LB30_S1 5.00% (persistence 30.00%, "
                                          "climatology 20.00%); T=10: A LB30_S1 25.00% (persistence 30.00%, "
                                          "climatology 20.00%; no forecast beats climatology).")


def test_reconstruction_verdict_names_the_best_beside_the_climatology():
    sentence, table = reconstruction_verdict({"sparta": fake_results(1.0), "pca": fake_results(0.5)})
    assert sentence == ("Reconstruction: from complete input EOF/PCA (linear) decodes best (0.50%, SPARTA - Early-Fusion "
                        "HN + Cycle 1.00%); from 90% hidden input EOF/PCA (linear) decodes best (1.50%, SPARTA - "
                        "Early-Fusion HN + Cycle 3.00%); every model far below the climatology's 4.00%.")
    assert table.header == ["RRMSE (L2) %, complete", "RRMSE (L2) %, 90% hidden", "mean ACC, complete",
                            "mean ACC, 90% hidden"]
    assert table.rows["climatology (baseline)"] == ["4.00", "4.00", "0.000", "0.000"]
    assert table.rows["EOF/PCA (linear)"] == ["0.50", "1.50", "0.900", "0.700"]
    assert table.best["EOF/PCA (linear)"] == [True, True, True, True]  # ACC ties with SPARTA's: both marked
    sentence, _ = reconstruction_verdict({"sparta": fake_results(5.0)})
    assert sentence.endswith("; SPARTA - Early-Fusion HN + Cycle no better than the climatology (4.00%).")


def test_report_from_saved_metrics(tmp_path):
    for i, name in enumerate(VARIANTS):
        evaluation = tmp_path / name / "evaluation"
        evaluation.mkdir(parents=True)
        (evaluation / "metrics.json").write_text(json.dumps(fake_results(1.0 + i)))
        np.save(evaluation / "smoothness_latents.npy", np.random.default_rng(i).normal(size=(20, 8)))
    md, page = build_report(tmp_path)
    text = md.read_text()
    for title, _, tag in SECTIONS:
        assert f"## {title}" in text and f"report_figures/forecast_skill_LB30_S1_{tag}.png" in text
    assert text.index("## Verdict") < text.index(f"## {SECTIONS[0][0]}")
    assert "Reconstruction: from complete input Autoencoder decodes best (1.00%, EOF/PCA (linear) 2.00%" in text
    assert "Forecasts by RMSE: the leads (days) at which each beats persistence (P) and the climatology (C)" in text
    assert text.index("## Verdict") < text.index("## How to read this report")
    first_forecast_figure = text.index("](report_figures/forecast_")
    assert text[first_forecast_figure:].startswith("](report_figures/forecast_skill_LB30_S1_sparta-autoencoder-pca")
    assert text.count("Autoregressive RRMSE (paper formula, %)") == 3 and text.count("Smoothness metrics") == 3
    assert text.count("Autoregressive RRMSE (L2, ours, %)") == 3 and text.count("per channel, look-back") == 3
    assert "| SPARTA - Late-Fusion, GNN |" in text and "SPARTA vs Autoencoder: Forecast RRMSE (paper formula)" in text
    assert "| EOF/PCA (linear) |" in text and "SPARTA vs EOF/PCA (linear): Forecast RRMSE (paper" in text
    html = page.read_text()
    per_section = 2 + 2 + 1 + 4 + 1 + 1 + 1  # RRMSE x2, RMSE/ACC, per channel, reconstruction x4, smoothness, ...
    assert html.count("<table>") == 3 + 3 * per_section  # + the verdict's three
    assert "data:image/png;base64," in html and "src='report_figures" not in html


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
