"""The comparison report: a verdict built from the numbers, then the paper's tables 1-15 from our own measured
numbers beside WeatherBench-style scores (RMSE and ACC per variable), with figures.

Built only from saved files (each variant's ``evaluation/metrics.json`` and figures),
so ``sparta report DIR`` regenerates it without retraining. ``report.md`` links
the figures; ``report.html`` embeds them and opens anywhere on its own.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import platform
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from sparta import metrics, plots
from sparta.tables import Table, forecast_settings, make_table, paper_tables
from sparta.variants import VARIANTS

# The paper's three comparisons (section 7), each a list of variants in row order and the tag of its figures'
# file names (they show every variant of the comparison).
SECTIONS = [
    ("Early fusion vs autoencoder and EOF/PCA (paper tables 1-5, plus the linear baseline)",
     ["sparta", "autoencoder", "pca"], "sparta-autoencoder-pca"),
    ("Ablation: hard negatives and cycle loss (paper tables 6-10)", ["sparta-none", "sparta-cycle", "sparta-hn",
                                                                     "sparta"], "ablation"),
    ("Late fusion (paper tables 11-15)", ["sparta", "sparta-attention", "sparta-gnn"], "late-fusion"),
]


@dataclass
class Block:
    """One piece of the report: a heading, a paragraph, a table or a figure."""

    kind: str  # "h2" | "p" | "table" | "figure"
    content: str | Table
    caption: str = ""


def collect(out: Path) -> dict[str, dict]:
    """``{variant: metrics.json}`` for every evaluated variant under ``out``."""
    found = {}
    for name in VARIANTS:
        path = out / name / "evaluation" / "metrics.json"
        if path.is_file():
            found[name] = json.loads(path.read_text())
    return found


def hardware() -> str:
    if torch.cuda.is_available():
        device = f"GPU {torch.cuda.get_device_name(0)}"
    else:
        import os

        device = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return f"{device}; torch {torch.__version__}; Python {platform.python_version()}"


def which_is_better(name_a: str, a: float, name_b: str, b: float, lower_is_better: bool = True) -> str:
    """In words which of two scores is better, and by how much of the other's:
    ``SPARTA better (3.2 against 3.5 for the autoencoder, 8.6% lower)``."""
    if a == b:
        return f"{name_a} and {name_b} equal"
    winner, w, loser, v = (name_a, a, name_b, b) if (a < b) == lower_is_better else (name_b, b, name_a, a)
    share = f", {100 * abs(w - v) / abs(v):.1f}% {'lower' if w < v else 'higher'}" if v else ""
    return f"{winner} better ({w:.3g} against {v:.3g} for {loser}{share})"


def relative_improvements(a: dict, b: dict, name_a: str = "SPARTA", name_b: str = "the autoencoder") -> list[str]:
    """The paper's conclusion lines, from our numbers, saying in words which model is better per task and lead."""
    lines = []
    for setting in a.get("forecast", {}):
        if setting in b.get("forecast", {}):
            for metric, name in (("rrmse_paper", "paper formula"), ("rrmse_l2", "L2, ours")):
                ours, base = a["forecast"][setting]["at"].get(metric), b["forecast"][setting]["at"].get(metric)
                if ours and base:
                    cells = "; ".join(f"T={t}: {which_is_better(name_a, ours[t], name_b, base[t])}" for t in ours)
                    lines.append(f"Forecast RRMSE ({name}), {setting}: {cells}")
    if "diffusion" in a and "diffusion" in b:
        d, e = a["diffusion"], b["diffusion"]
        lines.append(f"Diffusion RRMSE: {which_is_better(name_a, d['rrmse_paper'], name_b, e['rrmse_paper'])} "
                     f"(paper formula); {which_is_better(name_a, d['rrmse_l2'], name_b, e['rrmse_l2'])} (L2, ours). "
                     f"Std dev (paper: all generated values): "
                     f"{which_is_better(name_a, d['latent_std_all_samples'], name_b, e['latent_std_all_samples'])}; "
                     "std across draws (ours): "
                     f"{which_is_better(name_a, d['latent_std_per_condition'], name_b, e['latent_std_per_condition'])}")
    if "classify" in a and "classify" in b:
        c, e = a["classify"], b["classify"]
        lines.append(f"Classification: test loss {which_is_better(name_a, c['cross_entropy'], name_b, e['cross_entropy'])}"
                     f"; accuracy {100 * c['accuracy']:.1f}% ({name_a}) vs {100 * e['accuracy']:.1f}% ({name_b}), "
                     f"chance {100 / len(c['confusion']):.0f}%")
    return lines


def _comparison_figures(out: Path, results: dict[str, dict], names: list[str], tag: str) -> list[Block]:
    """The variants of one section overlaid: RMSE and ACC per variable vs lead (the first forecast figures) and
    vs the hidden fraction of decoded test days, the forecast scores vs lead, smoothness and PCA."""
    from sparta.evaluation.forecast import variable_skill_curves  # imports the downstream models: read when drawing

    figs = out / "report_figures"
    labels = {VARIANTS[n].label: n for n in names}
    units = next((results[n]["units"] for n in names if "units" in results[n]), {})
    blocks = []
    for setting in forecast_settings({n: results[n] for n in names}):
        summaries = {VARIANTS[n].label: results[n]["forecast"][setting] for n in names
                     if "per_variable" in results[n].get("forecast", {}).get(setting, {})}
        if summaries:
            path = plots.plot_variable_skill(variable_skill_curves(summaries), figs / f"forecast_skill_{setting}_{tag}.png",
                                             f"Forecast {setting}: RMSE and ACC per variable", units)
            blocks.append(Block("figure", str(path), f"Forecast {setting}: RMSE (each variable's unit) and ACC per "
                                                     "variable vs lead time, every model beside persistence and the "
                                                     "climatology"))
    recon = {VARIANTS[n].label: results[n]["reconstruction"] for n in names if "reconstruction" in results[n]}
    if recon:
        path = plots.plot_reconstruction_skill(recon, next(iter(recon.values()))["climatology"], units,
                                               figs / f"reconstruction_skill_{tag}.png", "Decoded test days")
        blocks.append(Block("figure", str(path), "Decoded test days: RMSE and ACC per variable vs the hidden fraction "
                                                 "of the input, beside the climatology"))
    latents = {label: np.load(out / n / "evaluation" / "smoothness_latents.npy") for label, n in labels.items()
               if (out / n / "evaluation" / "smoothness_latents.npy").is_file()}
    if latents:
        steps = {k: metrics.step_distances(torch.from_numpy(v)).numpy() for k, v in latents.items()}
        cycles = {k: metrics.cycle_distances(torch.from_numpy(v)).numpy() for k, v in latents.items()}
        blocks += [
            Block("figure", str(plots.plot_distance_series(steps, "temporal distance ||h_t - h_{t-1}||^2",
                                                           figs / f"temporal_{tag}.png")), "Temporal distance"),
            Block("figure", str(plots.plot_distance_series(cycles, "cycle distance", figs / f"cycle_{tag}.png")),
                  "Cycle distance"),
            Block("figure", str(plots.plot_pca(latents, figs / f"pca_{tag}.png")), "PCA of consecutive latents"),
        ]
    for setting in forecast_settings({n: results[n] for n in names}):
        curves = {VARIANTS[n].label: plots.forecast_summary_curves(results[n]["forecast"][setting])
                  for n in names if setting in results[n].get("forecast", {})}
        blocks.append(Block("figure", str(plots.plot_forecast_curves(curves, figs / f"forecast_{setting}_{tag}.png",
                                                                     f"Forecast {setting}")),
                            f"Forecast scores vs lead time, {setting}"))
    return blocks


TEST_DAY_FIGURE = "reconstruction_test_day*.png"


def _run_figure(out: Path, name: str, pattern: str, caption: str) -> list[Block]:
    hits = sorted((out / name / "figures").glob(pattern))
    return [Block("figure", str(hits[0]), f"{VARIANTS[name].label}: {caption}")] if hits else []


def decoder_skill(out: Path, names: list[str]) -> list[Block]:
    """A paragraph with each trained model's last logged decoder skill (metrics.csv), and a warning for
    every model whose decoder is no better than climatology (its downstream scores measure a mean field)."""
    skills = {}
    for name in names:
        path = out / name / "metrics.csv"
        if path.is_file():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("skill_rrmse_vs_climatology")]
            if rows:
                skills[VARIANTS[name].label] = rows[-1]
    if not skills:
        return []
    listed = "; ".join(f"{label} {float(r['skill_rrmse_vs_climatology']):.2f}x, "
                       f"eddy r {float(r['skill_eddy_r_mean']):.2f}" for label, r in skills.items())
    blocks = [Block("p", "Decoder skill at the end of training (validation days decoded from complete inputs: "
                         f"RRMSE as a multiple of the monthly climatology's, mean eddy correlation): {listed}.")]
    blocks += [Block("p", f"**Warning: the decoder of {label} is no better than climatology**, so its forecast and "
                          "diffusion scores measure a mean-field decoder.")
               for label, r in skills.items() if float(r["skill_rrmse_vs_climatology"]) >= 1.0]
    return blocks


def lead_ranges(leads: list[int]) -> str:
    """Leads as ranges: ``[1, 2, 3, 7]`` -> ``1-3, 7``; none -> ``none``."""
    spans: list[list[int]] = []
    for t in leads:
        if spans and t == spans[-1][1] + 1:
            spans[-1][1] = t
        else:
            spans.append([t, t])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans) or "none"


def winning_leads(model: list[float], baseline: list[float], lower_is_better: bool) -> list[int]:
    """The leads (1 = the first step) at which ``model`` scores strictly better than ``baseline``."""
    return [t + 1 for t, (m, b) in enumerate(zip(model, baseline)) if (m < b if lower_is_better else m > b)]


def skill_run(leads: list[int]) -> str:
    """The first run of consecutive winning leads, and how many win later (at long leads every score is near
    its limit and which side wins is noise): ``[2, 3, 4, 9, 10]`` -> ``2-4 (+2 later)``; none -> ``never``."""
    if not leads:
        return "never"
    end = next((a for a, b in zip(leads, leads[1:]) if b != a + 1), leads[-1])
    later = sum(t > end for t in leads)
    return lead_ranges([t for t in leads if t <= end]) + (f" (+{later} later)" if later else "")


USEFUL_ACC = 0.6
"""The ACC above which a forecast is conventionally called useful (WMO practice for medium-range forecasts)."""
ACC_WINDOW = 10
"""Leads (days) over which the verdict compares ACCs: later, both sides' ACC is near 0 and which wins is noise."""


def useful_days(acc: list[float]) -> int:
    """How many leads, from the first on, keep an ACC of at least :data:`USEFUL_ACC`."""
    return next((t for t, v in enumerate(acc) if v < USEFUL_ACC), len(acc))


def forecast_verdict(results: dict[str, dict], metric: str) -> Table:
    """Per model and forecast setting (rows) and variable (columns), by ``rmse``: the leads at which the forecast
    beats persistence (P) and the climatology (C); by ``acc``: its days of useful skill beside persistence's, and
    the leads at which it beats persistence (the climatology's ACC is 0 by construction)."""
    rows: dict[str, list[str]] = {}
    channels: list[str] = []
    for label, res in results.items():
        for setting, entry in res.get("forecast", {}).items():
            if "per_variable" not in entry:
                continue
            model, baselines = entry["per_variable"][metric], entry["variable_baselines"]
            channels = list(model)
            if metric == "rmse":
                rows[f"{label}, {setting}"] = [
                    " · ".join(f"{tag} {skill_run(winning_leads(model[c], baselines[name]['rmse'][c], True))}"
                               for tag, name in (("P", "persistence"), ("C", "climatology"))) for c in channels]
            else:
                persistence = baselines["persistence"]["acc"]
                wins = [lead_ranges(winning_leads(model[c][:ACC_WINDOW], persistence[c][:ACC_WINDOW], False))
                        for c in channels]
                rows[f"{label}, {setting}"] = [
                    f"{useful_days(model[c])} (P {useful_days(persistence[c])}) · "
                    + (f"beats P on days {w}" if w != "none" else "never beats P") for c, w in zip(channels, wins)]
    if metric == "rmse":
        title = ("Forecasts by RMSE: the leads (days) at which each beats persistence (P) and the climatology (C), "
                 "the first run of consecutive days (evaluation/forecast_curves.csv has every lead)")
    else:
        title = (f"Forecasts by ACC: days of useful skill (ACC >= {USEFUL_ACC} from the first lead on) beside "
                 f"persistence's (P), and the leads (of the first {ACC_WINDOW}) at which the forecast's ACC beats persistence's")
    return Table(title, channels, rows, {label: [False] * len(channels) for label in rows})


HEADLINE_LEADS = ("1", "2", "5", "10")
"""The leads (days) the verdict's forecast sentence names: short range, where forecasts differ."""


def forecast_headline(results: dict[str, dict]) -> str | None:
    """One sentence: at each of :data:`HEADLINE_LEADS` the best forecast (model and setting) by pooled RRMSE (L2),
    beside persistence and the climatology on the same days."""
    cells = []
    for t in HEADLINE_LEADS:
        scored = {f"{label} {setting}": entry for label, r in results.items()
                  for setting, entry in r.get("forecast", {}).items() if t in entry["at"].get("rrmse_l2", {})}
        if not scored:
            continue
        best = min(scored, key=lambda k: scored[k]["at"]["rrmse_l2"][t])
        value, baselines = scored[best]["at"]["rrmse_l2"][t], scored[best]["baselines"]["rrmse_l2"]
        beaten = [name for name in ("persistence", "climatology") if value >= baselines[name][t]]
        cells.append(f"T={t}: {best} {value:.2f}% (persistence {baselines['persistence'][t]:.2f}%, climatology "
                     f"{baselines['climatology'][t]:.2f}%" + (f"; no forecast beats {' or '.join(beaten)})" if beaten
                                                               else ")"))
    return "Best forecast by RRMSE (L2): " + "; ".join(cells) + "." if cells else None


def reconstruction_verdict(results: dict[str, dict]) -> tuple[str, Table] | None:
    """Decoded held-back test days, complete and 90% hidden: a sentence naming the best and a table of RRMSE
    (L2) and the mean of the per-variable ACCs, every model beside the climatology."""
    have = {VARIANTS[n].label: r["reconstruction"] for n, r in results.items() if "reconstruction" in r}
    if not have:
        return None
    first = next(iter(have.values()))
    columns = [(h, tag) for h, tag in ((0.0, "complete"), (0.9, "90% hidden")) if h in first["hidden"]]
    rows: dict[str, list[float | None]] = {}
    for label, r in have.items():
        js = [r["hidden"].index(h) for h, _ in columns]
        rows[label] = ([r["rrmse_l2"][j] for j in js]
                       + [float(np.mean([v[j] for v in r["per_variable"]["acc"].values()])) for j in js])
    climatology = first["climatology"]
    rows["climatology (baseline)"] = ([climatology["rrmse_l2"]] * len(columns)
                                      + [float(np.mean(list(climatology["per_variable"]["acc"].values())))] * len(columns))
    header = ([f"RRMSE (L2) %, {tag}" for _, tag in columns] + [f"mean ACC, {tag}" for _, tag in columns])
    table = make_table("Decoded held-back test days (embed, then decode): RRMSE (L2, ours) and the mean over "
                       "variables of the ACC; bold: the best", header, rows,
                       ["min"] * len(columns) + ["max"] * len(columns), [2] * len(columns) + [3] * len(columns))
    best = []
    for k, (_, tag) in enumerate(columns):
        ranked = sorted(have, key=lambda label: rows[label][k])
        best.append(f"from {tag} input {ranked[0]} decodes best ({rows[ranked[0]][k]:.2f}%"
                    + "".join(f", {label} {rows[label][k]:.2f}%" for label in ranked[1:]) + ")")
    worse = [label for label in have if any(rows[label][k] >= climatology["rrmse_l2"] for k in range(len(columns)))]
    against = (f"{', '.join(worse)} no better than the climatology ({climatology['rrmse_l2']:.2f}%)" if worse else
               f"every model far below the climatology's {climatology['rrmse_l2']:.2f}%")
    return f"Reconstruction: {'; '.join(best)}; {against}.", table


def seed_spread_lines(results: dict[str, dict], metric: str = "rrmse_l2") -> list[str]:
    """For each forecast setting with several seeds: at each reported lead the best model and whether its lead
    over the runner-up exceeds the seed spread (their mean ± std over seeds do not overlap)."""
    lines = []
    for setting in forecast_settings(results):
        entries = {label: r["forecast"][setting] for label, r in results.items()
                   if r.get("forecast", {}).get(setting, {}).get("seeds", 1) > 1}
        if len(entries) < 2:
            continue
        cells = []
        for t in next(iter(entries.values()))["at"][metric]:
            ranked = sorted(entries, key=lambda label: entries[label]["at"][metric][t])
            (best, m_b, s_b), (second, m_s, s_s) = [(label, entries[label]["at"][metric][t],
                                                     entries[label]["at"][f"{metric}_spread"][t]) for label in ranked[:2]]
            beyond = "more than" if m_s - m_b > s_b + s_s else "within"
            cells.append(f"T={t}: {best} best ({m_b:.2f} ± {s_b:.2f}), {beyond} the seed spread of the runner-up "
                         f"{second} ({m_s:.2f} ± {s_s:.2f})")
        seeds = next(iter(entries.values()))["seeds"]
        lines.append(f"Forecast {setting}, {metrics.FIELD_METRICS[metric].table_name} over {seeds} seeds: " + "; ".join(cells))
    return lines


def verdict_sentences(results: dict[str, dict], reconstruction: tuple[str, Table] | None = None) -> list[str]:
    """The verdict's sentences (``{variant: metrics.json}``): the decoded reconstructions against the
    climatology (``reconstruction``: :func:`reconstruction_verdict`'s, when already built), the best forecast
    per lead against persistence and the climatology, season accuracy against chance."""
    labelled = {VARIANTS[n].label: r for n, r in results.items()}
    reconstruction = reconstruction or reconstruction_verdict(results)
    sentences = [reconstruction[0]] if reconstruction else []
    headline = forecast_headline(labelled)
    sentences += [headline] if headline else []
    classified = {label: r["classify"] for label, r in labelled.items() if "classify" in r}
    if classified:
        listed = ", ".join(f"{label} {100 * c['accuracy']:.1f}" + (f" ± {100 * c['accuracy_spread']:.1f}%"
                                                                  if "accuracy_spread" in c else "%")
                           for label, c in classified.items())
        seeds = next(iter(classified.values())).get("seeds", 1)
        chance = 100 / len(next(iter(classified.values()))["confusion"])
        sentences.append(f"Season classification accuracy (mean ± std over {seeds} classifier seeds): {listed}; "
                         f"chance {chance:.0f}%.")
    return sentences


def verdict(out: Path, results: dict[str, dict]) -> list[Block]:
    """The report's first screen, built from the numbers (``{variant: metrics.json}``): the verdict's
    sentences; the reconstruction table; one held-back test day per model; then the leads at which each
    forecast beats persistence and the climatology per variable and whether the differences between models
    exceed the seed spread."""
    labelled = {VARIANTS[n].label: r for n, r in results.items()}
    reconstruction = reconstruction_verdict(results)
    sentences = verdict_sentences(results, reconstruction)
    blocks = [Block("h2", "Verdict"), *(Block("p", line) for line in sentences)]
    blocks += [Block("table", reconstruction[1])] if reconstruction else []
    for name in results:  # what a decoded day looks like, before the forecast details
        blocks += _run_figure(out, name, TEST_DAY_FIGURE, "a held-back test day: truth, decoded from the complete "
                              "input and with 90% hidden, and the errors")
    blocks += [Block("table", table) for table in (forecast_verdict(labelled, m) for m in ("rmse", "acc"))
               if table.rows]  # metrics.json written before the per-variable scores have none
    blocks += [Block("p", line) for line in seed_spread_lines(labelled)]
    return blocks


def summary(out: Path, page: Path) -> list[str]:
    """What ``sparta reproduce`` prints when it ends: the verdict's sentences, the report page and the
    decoded test-day figures, so the first screen after a run says what was learned and where to look."""
    results = collect(out)
    lines = ["Verdict:", *(f"  {s}" for s in verdict_sentences(results)), f"Report: {page}"]
    for name in results:
        lines += [f"Decoded test day, {VARIANTS[name].label}: {f}" for f in
                  sorted((out / name / "figures").glob(TEST_DAY_FIGURE))[:1]]
    return lines


def build_blocks(out: Path, preset: str | None = None) -> list[Block]:
    results = collect(out)
    if not results:
        raise FileNotFoundError(f"no evaluated variants under '{out}' (expected {out}/<variant>/evaluation/"
                                "metrics.json); run `sparta reproduce` first")
    any_result = next(iter(results.values()))
    blocks = [Block("p", f"Data: {any_result['source']}. Preset: {preset or any_result['preset']}. "
                         f"Variants: {', '.join(results)}. Built {datetime.now():%Y-%m-%d %H:%M} on {hardware()}.")]
    blocks += verdict(out, results)
    blocks += [Block("h2", "How to read this report"),
               Block("p", "Bold marks the best forecast or reconstruction of each column (or lead), persistence and "
                          "the climatology included, never a reconstruction ceiling (the decoder on the true latents "
                          "is not a forecast). The climatology is the train split's mean of each day of the year, "
                          "smoothed over 31 days. Forecast and diffusion scores are on decoded fields in physical "
                          "units; latent scores on raw latents and on latents standardised with the downstream-train "
                          "statistics. RMSE and ACC per variable follow WeatherBench2: area-weighted, anomalies of "
                          "forecast and truth from the climatology of the valid day. RRMSE (paper formula) is the "
                          "authors' RMSE / mean(truth) x 100, pooled over channels (dominated by z850), the number to "
                          "read against the paper's tables; RRMSE (L2, ours) is ||error|| / ||truth|| x 100 and reads "
                          "about half as high on the same prediction; per-channel tables use ours, because the "
                          "paper's formula divides by means near 0 for u850 and v850.")]
    blocks += decoder_skill(out, list(results))
    for title, names, tag in SECTIONS:
        rows = {VARIANTS[n].label: results[n] for n in names if n in results}
        if len(rows) < 2:
            continue
        blocks.append(Block("h2", title))
        blocks += [Block("table", t) for t in paper_tables(rows, per_channel=True)]
        if names[0] == "sparta" and "autoencoder" in names:  # the paper's conclusion, and the same against EOFs
            for base in ("autoencoder", "pca"):
                if {"sparta", base} <= results.keys():
                    blocks += [Block("p", f"SPARTA vs {VARIANTS[base].label}: {line}")
                               for line in relative_improvements(results["sparta"], results[base], "SPARTA",
                                                                 VARIANTS[base].label)]
        blocks += _comparison_figures(out, results, [n for n in names if n in results], tag)
    robust = {VARIANTS[n].label: r["robustness"] for n, r in results.items() if "robustness" in r}
    if robust:
        blocks += [Block("h2", "Robustness to sparsity (beyond the paper)"),
                   Block("figure", str(plots.plot_robustness(robust, out / "report_figures" / "robustness.png")),
                         "Season accuracy and one-step forecast RRMSE vs input mask ratio, beside chance, "
                         "persistence and the climatology")]
    blocks.append(Block("h2", "Per-model figures"))
    for name in results:
        blocks += _run_figure(out, name, "loss_blend.png", "training losses, stage 2")
        blocks += _run_figure(out, name, "loss_autoencoder.png", "training loss")
        blocks += _run_figure(out, name, "eof_spectrum.png", "explained variance of the EOFs")
        blocks += _run_figure(out, name, "forecast_error_*.png", "forecast errors")
        blocks += _run_figure(out, name, "trajectories.png", "t-SNE trajectories of look-back windows")
        blocks += _run_figure(out, name, "diffusion_reconstruction*.png", "diffusion reconstruction")
    return blocks


def render_markdown(blocks: list[Block], out: Path) -> str:
    parts = ["# SPARTA reproduction report\n"]
    for b in blocks:
        if b.kind == "h2":
            parts.append(f"## {b.content}\n")
        elif b.kind == "p":
            parts.append(f"{b.content}\n")
        elif b.kind == "table":
            parts.append(b.content.markdown())
        else:
            parts.append(f"![{b.caption}]({Path(b.content).relative_to(out)})\n")
    return "\n".join(parts)


def render_html(blocks: list[Block]) -> str:
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:14px}caption{font-weight:600;text-align:left;"
             "padding:4px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td{white-space:nowrap}tbody th{text-align:left}"
             "figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:13px}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>SPARTA report</title><style>{style}</style>"
             "</head><body><h1>SPARTA reproduction report</h1>"]
    for b in blocks:
        if b.kind == "h2":
            parts.append(f"<h2>{html.escape(b.content)}</h2>")
        elif b.kind == "p":
            parts.append(f"<p>{html.escape(b.content)}</p>")
        elif b.kind == "table":
            parts.append(b.content.html())
        else:
            data = base64.b64encode(Path(b.content).read_bytes()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(b.caption)}'>"
                         f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "".join(parts)


def redraw_run_figures(out: Path) -> None:
    """Each evaluated variant's own figures, redrawn from its saved results (nothing is retrained)."""
    from sparta.evaluation import draw_figures
    from sparta.runs import Run

    for name in VARIANTS:
        if (out / name / "evaluation" / "metrics.json").is_file() and (out / name / "config.yaml").is_file():
            draw_figures(Run.open(out / name))


def build_report(out: str | Path, preset: str | None = None, redraw: bool = True) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` from the saved results under ``out`` (with ``redraw``, every variant's
    figures are redrawn from its saved results first)."""
    out = Path(out)
    if redraw:
        redraw_run_figures(out)
    blocks = build_blocks(out, preset)
    md, page = out / "report.md", out / "report.html"
    md.write_text(render_markdown(blocks, out))
    page.write_text(render_html(blocks))
    return md, page
