"""Paper-format tables built from saved ``evaluation/metrics.json`` results.

Every builder takes ``{row label: results}`` (one results dict per trained model) and
returns a :class:`Table` that renders to Markdown or HTML, the best value of each
column marked in bold.

The forecast and smoothness tables have layouts of their own (leads and baselines; mean ± std).
Tasks with scalar results declare their columns in their entry of :data:`sparta.tasks.TASK_SPECS`
(:class:`~sparta.tasks.Column`), and :func:`downstream_table` lays them out, so a new task of that kind
needs no change here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass

from sparta.downstream.forecast import LIM_SETTING
from sparta.metrics import FIELD_METRICS, VARIABLE_METRICS, variable_metrics_in
from sparta.tasks import TASK_SPECS, TaskSpec

Results = dict[str, dict]


def _fmt(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


@dataclass
class Table:
    title: str
    header: list[str]
    rows: dict[str, list[str]]  # label -> formatted cells
    best: dict[str, list[bool]]  # label -> bold flags

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| | " + " | ".join(self.header) + " |",
                 "|---" * (len(self.header) + 1) + "|"]
        for label, cells in self.rows.items():
            marked = [f"**{c}**" if b else c for c, b in zip(cells, self.best[label])]
            lines.append(f"| {label} | " + " | ".join(marked) + " |")
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["", *self.header])
        body = []
        for label, cells in self.rows.items():
            tds = "".join(f"<td><b>{html.escape(c)}</b></td>" if b else f"<td>{html.escape(c)}</td>"
                          for c, b in zip(cells, self.best[label]))
            body.append(f"<tr><th>{html.escape(label)}</th>{tds}</tr>")
        return (f"<table><caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table>")


def make_table(title: str, header: list[str], rows: dict[str, list[float | None]], better: list[str],
               digits: list[int], spreads: dict[str, list[float | None]] | None = None,
               unranked: Iterable[str] = (), groups: dict[str, str] | None = None) -> Table:
    """``better[j]`` is 'min', 'max' or '' (no mark) for column j; marks need at least two ranked rows.

    Rows in ``unranked`` (a reconstruction ceiling: not a forecast) are never marked and never hide the best
    forecast's mark. With ``groups`` (row label -> group), the best is marked within each group (the rows of one
    variable, or of one lead)."""
    unranked = set(unranked)
    group_of = groups or {}
    best: dict[tuple[str | None, int], float] = {}
    for j, rule in enumerate(better):
        by_group: dict[str | None, list[float]] = {}
        for label, r in rows.items():
            if label not in unranked and r[j] is not None and not math.isnan(r[j]):
                by_group.setdefault(group_of.get(label), []).append(r[j])
        for group, values in by_group.items():
            if rule and len(values) > 1:
                best[group, j] = min(values) if rule == "min" else max(values)
    cells, marks = {}, {}
    for label, values in rows.items():
        spread = (spreads or {}).get(label)
        cells[label] = [_fmt(v, digits[j]) + (f" ± {_fmt(spread[j], digits[j])}" if spread and spread[j] else "")
                        for j, v in enumerate(values)]
        marks[label] = [label not in unranked and v is not None and v == best.get((group_of.get(label), j))
                        for j, v in enumerate(values)]
    return Table(title, header, cells, marks)


MODEL_BASELINES = ("reconstruction ceiling",)
"""Forecast baselines that depend on the model (its decoder), unlike persistence and climatology."""

LOWER_IS_BETTER = tuple(key for key, metric in FIELD_METRICS.items() if metric.lower_is_better)


def _at(entry: dict, metric: str) -> dict | None:
    """``entry["at"][metric]``; metrics.json written before the two RRMSE formulas has ``rrmse`` (= ours, L2)."""
    at = entry.get("at", {})
    return at.get(metric, at.get("rrmse") if metric == "rrmse_l2" else None)


def _baselines(entry: dict, metric: str) -> dict:
    """``{baseline: {lead: value}}`` of one formula; older files held ours (L2) only, keyed by baseline name."""
    found = entry.get("baselines", {})
    if metric in found:
        return found[metric]
    return found if metric == "rrmse_l2" and not set(found) & set(LOWER_IS_BETTER) else {}


def describe_setting(setting: str) -> str:
    """A forecast setting's key in words: ``LB30_S1`` -> look-back 30, sampling interval 1."""
    if setting == LIM_SETTING:
        return "linear inverse model (stepped from the last look-back day of the first LSTM setting's windows)"
    lookback, stride = setting[2:].split("_S")
    return f"look-back {lookback}, sampling interval {stride}"


def forecast_table(results: Results, setting: str, metric: str = "rrmse_paper", baselines: bool = True) -> Table:
    """Tables 1-3 / 6-8 / 11-13: a forecast metric at the lead times for one (look-back, stride) setting.

    The paper's tables use ``rrmse_paper`` (RMSE / mean(truth), the authors' formula), the default.
    """
    first = next(r["forecast"][setting] for r in results.values() if setting in r.get("forecast", {}))
    leads = list(_at(first, metric) or {})
    rows, spreads = {}, {}
    for label, res in results.items():
        entry = res.get("forecast", {}).get(setting)
        at = _at(entry, metric) if entry else None
        if at:
            rows[label] = [at.get(t) for t in leads]
            if entry.get("seeds", 1) > 1 and f"{metric}_spread" in entry.get("at", {}):
                spreads[label] = [entry["at"][f"{metric}_spread"][t] for t in leads]
    ceilings = []
    if baselines:
        for name, values in _baselines(first, metric).items():
            if name not in MODEL_BASELINES:
                rows[f"{name} (baseline)"] = [values[t] for t in leads]
        for label, res in results.items():  # a ceiling belongs to its model's decoder: one row per model
            for name in MODEL_BASELINES:
                values = _baselines(res.get("forecast", {}).get(setting, {}), metric).get(name)
                if values:
                    rows[f"{label}: {name}"] = [values[t] for t in leads]
                    ceilings.append(f"{label}: {name}")
    n_seeds = first.get("seeds", 1)
    steps = max(map(len, first["curve"].values()), default=0)  # the every-lead curves; SSIM/PSNR are at the leads only
    title = (f"Autoregressive {FIELD_METRICS[metric].table_name} - {steps} steps, {describe_setting(setting)}"
             + (f" (mean ± std over {n_seeds} seeds)" if n_seeds > 1 else ""))
    rule = "min" if metric in LOWER_IS_BETTER else "max"
    title += "; bold: the best forecast, persistence and climatology included (a ceiling is not a forecast)"
    return make_table(title, [f"T={t}" for t in leads], rows, [rule] * len(leads), [2] * len(leads), spreads,
                      unranked=ceilings)


def channel_table(results: Results, setting: str) -> Table:
    """Forecast RRMSE per channel at the lead times, by our L2 formula (not a paper table).

    Per channel the paper's formula divides by the channel's mean, near 0 for u850 and v850, which
    makes it blow up there; ||e|| / ||truth|| stays well conditioned.
    """
    per_row: dict[str, dict[str, float]] = {}
    groups: dict[str, str] = {}
    first = next(r["forecast"][setting] for r in results.values() if setting in r.get("forecast", {}))
    baselines = {name: first.get("variable_baselines", {}).get(name, {}).get("rrmse_l2_per_channel", {})
                 for name in ("persistence", "climatology")}
    for label, res in results.items():
        entry = res.get("forecast", {}).get(setting, {})
        per_lead = entry.get("rrmse_l2_per_channel", entry.get("rrmse_per_channel", {}))
        for t, per_channel in per_lead.items():
            per_row[f"{label}, T={t}"], groups[f"{label}, T={t}"] = per_channel, t
    for t in dict.fromkeys(groups.values()):  # each lead's baselines after the models of the same lead
        for name, per_lead in baselines.items():
            if t in per_lead:
                per_row[f"{name} (baseline), T={t}"], groups[f"{name} (baseline), T={t}"] = per_lead[t], t
    order = sorted(per_row, key=lambda label: list(dict.fromkeys(groups.values())).index(groups[label]))
    channels = list(next(iter(per_row.values()), {}))
    rows = {label: [per_row[label].get(c) for c in channels] for label in order}
    title = (f"Forecast RRMSE (L2, ours, %) per channel, {describe_setting(setting)}: "
             "||pred - true|| / ||true|| per variable (the paper's RMSE / mean(truth) divides by means near 0 "
             "for u850 and v850); bold: the best of each lead")
    return make_table(title, channels, rows, ["min"] * len(channels), [2] * len(channels), groups=groups)


RECONSTRUCTION_HIDDEN = (0.0, 0.7, 0.9)
"""The hidden fractions of the per-variable reconstruction tables (the figure and metrics.json have every one)."""


def _digits(values: Iterable[float | None]) -> int:
    """Decimals that show three significant figures of the smallest value (0 to 4): the best scores, which the
    bold mark compares, differ there."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    return max(0, min(4, 2 - math.floor(math.log10(min(finite))))) if finite else 2


def _variable_header(results: Results, channels: list[str], metric: str) -> list[str]:
    units = next((r["units"] for r in results.values() if "units" in r), {})
    return [f"{c} ({units[c]})" if VARIABLE_METRICS[metric].in_units and c in units else c for c in channels]


def _variable_table(title: str, results: Results, metric: str, rows: dict[str, dict[str, float]],
                    groups: dict[str, str], spreads: dict[str, dict[str, float]] | None = None) -> Table:
    """A table of per-variable scores: one column per variable (RMSE in its unit), rows ``{label: {channel:
    value}}``, bold the best of each group of rows."""
    channels = list(dict.fromkeys(c for per in rows.values() for c in per))
    rule = "min" if VARIABLE_METRICS[metric].lower_is_better else "max"
    values = {label: [per.get(c) for c in channels] for label, per in rows.items()}
    digits = [_digits(v[j] for v in values.values()) if VARIABLE_METRICS[metric].in_units else 3
              for j in range(len(channels))]
    spread_rows = {label: [per.get(c) for c in channels] for label, per in (spreads or {}).items()}
    return make_table(title, _variable_header(results, channels, metric), values, [rule] * len(channels), digits,
                      spread_rows, groups=groups)


def variable_table(results: Results, setting: str, metric: str) -> Table:
    """Forecast RMSE or ACC per variable (WeatherBench2's definitions) at the reported leads of one setting: each
    model (± the std over its seeds), persistence and the climatology on the same days; bold: the best of each
    lead, baselines included."""
    first = next(r["forecast"][setting] for r in results.values() if "per_variable" in r.get("forecast", {}).get(setting, {}))
    leads = [int(t) for t in _at(first, "rrmse_l2") or {}]
    rows, groups, spreads = {}, {}, {}
    for t in leads:
        for label, res in results.items():
            entry = res.get("forecast", {}).get(setting, {})
            if "per_variable" in entry:
                rows[f"{label}, T={t}"] = {c: v[t - 1] for c, v in entry["per_variable"][metric].items()}
                if entry.get("seeds", 1) > 1:
                    spreads[f"{label}, T={t}"] = {c: v[t - 1] for c, v in entry["per_variable"][f"{metric}_spread"].items()}
        for name in ("persistence", "climatology"):
            rows[f"{name} (baseline), T={t}"] = {c: v[t - 1] for c, v in first["variable_baselines"][name][metric].items()}
    groups = {label: label.rsplit(", T=", 1)[1] for label in rows}
    name = VARIABLE_METRICS[metric].table_name
    title = (f"Forecast {name} per variable (WeatherBench2: area-weighted, anomalies from the day-of-year climatology), "
             f"{describe_setting(setting)}; bold: the best of each lead")
    return _variable_table(title, results, metric, rows, groups, spreads)


def reconstruction_tables(results: Results) -> list[Table]:
    """Decoded test days from complete and partly hidden inputs: pooled RRMSE by both formulas at every hidden
    fraction, and RMSE and ACC per variable at :data:`RECONSTRUCTION_HIDDEN`, each beside the climatology of the
    same days."""
    have = {label: r["reconstruction"] for label, r in results.items() if "reconstruction" in r}
    if not have:
        return []
    first = next(iter(have.values()))
    hidden = first["hidden"]
    tables = []
    for metric in ("rrmse_paper", "rrmse_l2"):
        rows = {label: r[metric] for label, r in have.items()}
        rows["climatology (baseline)"] = [first["climatology"][metric]] * len(hidden)
        tables.append(make_table(f"Decoded test days, {FIELD_METRICS[metric].table_name} vs the hidden fraction of "
                                 "the input; bold: the best", [f"{h:.0%} hidden" for h in hidden], rows,
                                 ["min"] * len(hidden), [2] * len(hidden)))
    for metric in variable_metrics_in([first["climatology"]["per_variable"], *(r["per_variable"] for r in have.values())]):
        name, rows = VARIABLE_METRICS[metric].table_name, {}
        for h in (h for h in RECONSTRUCTION_HIDDEN if h in hidden):
            j, tag = hidden.index(h), "complete input" if h == 0 else f"{h:.0%} hidden"
            for label, r in have.items():
                rows[f"{label}, {tag}"] = {c: v[j] for c, v in r["per_variable"][metric].items()}
            rows[f"climatology (baseline), {tag}"] = first["climatology"]["per_variable"][metric]
        groups = {label: label.rsplit(", ", 1)[1] for label in rows}
        tables.append(_variable_table(f"Decoded test days, {name} per variable (WeatherBench2); bold: the best of "
                                      "each input", results, metric, rows, groups))
    return tables


def diffusion_variable_table(results: Results) -> Table | None:
    """Conditional diffusion's decoded mean: each per-variable score beside the climatology of the same days."""
    have = {label: r["diffusion"] for label, r in results.items() if "per_variable" in r.get("diffusion", {})}
    if not have:
        return None
    channels = list(next(iter(next(iter(have.values()))["per_variable"].values())))
    per_row = {label: d["per_variable"] for label, d in have.items()}
    per_row["climatology (baseline)"] = next(iter(have.values()))["climatology"]["per_variable"]
    scored = variable_metrics_in(per_row.values())
    rows = {label: [per[m][c] for m in scored for c in channels] for label, per in per_row.items()}
    header = [f"{h} {VARIABLE_METRICS[m].table_name}" for m in scored for h in _variable_header(results, channels, m)]
    scaled = [VARIABLE_METRICS[m].in_units for m in scored for _ in channels]
    digits = [_digits(v[j] for v in rows.values()) if scaled[j] else 3 for j in range(len(header))]
    rules = ["min" if VARIABLE_METRICS[m].lower_is_better else "max" for m in scored for _ in channels]
    names = " and ".join(VARIABLE_METRICS[m].table_name for m in scored)
    return make_table(f"Conditional latent diffusion, decoded mean of the draws: {names} per variable "
                      "(WeatherBench2); bold: the best", header, rows, rules, digits)


def _tasks(tasks: Iterable[TaskSpec] | None) -> list[TaskSpec]:
    return list(TASK_SPECS.values() if tasks is None else tasks)


def downstream_table(results: Results, tasks: Iterable[TaskSpec] | None = None) -> Table:
    """Tables 5 / 9 / 14: the scalar results of the tasks that declare table columns (``Task.columns``; of
    ``tasks``, default :data:`sparta.tasks.TASK_SPECS`): conditional latent diffusion and latent classification.

    The paper's columns first, by the paper's definitions (RRMSE formula, density and realism of the
    mean of the draws, std of all generated values); ours beside them, named; each group in task order. A value
    with a ``<key>_spread`` beside it (the std over classifier seeds) shows it as ``± spread``; the tasks' baseline
    rows (``Task.baselines``) follow the models.
    """
    tasks = [t for t in _tasks(tasks) if t.columns]
    cols = [(t.key, c) for paper in (True, False) for t in tasks for c in t.columns if c.paper is paper]
    rows = {label: [c.get(res[key]) if key in res else None for key, c in cols] for label, res in results.items()}
    baselines: dict[str, dict[str, dict]] = {}  # {baseline: {task key: its values}}, from the first result with the task
    for t in tasks:
        found = next((res[t.key] for res in results.values() if t.key in res), None)
        for name, values in (t.baselines(found) if t.baselines and found else {}).items():
            baselines.setdefault(name, {})[t.key] = values
    for name, per_task in baselines.items():
        rows[f"{name} (baseline)"] = [c.get(per_task[key]) if key in per_task else None for key, c in cols]
    names = [t.table_name for t in tasks]
    title = " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
    spreads = {label: [res[key].get(f"{c.key}_spread") if key in res else None for key, c in cols]
               for label, res in results.items()}
    named = f"; baselines on the same days: {', '.join(baselines)}" if baselines else ""
    return make_table(f"{title[:1].upper()}{title[1:]} (the paper's columns first, then ours{named})",
                      [c.header for _, c in cols], rows, [c.better for _, c in cols], [c.digits for _, c in cols],
                      spreads)


def smoothness_table(results: Results) -> Table:
    """Tables 4 / 10 / 15: mean temporal and cycle distance (raw and scale-normalised), mean ± std."""
    keys = ["temporal", "cycle", "temporal_normalised", "cycle_normalised"]
    header = ["Mean temporal distance", "Mean cycle distance", "Temporal (normalised)", "Cycle (normalised)"]
    have = {label: res["smoothness"] for label, res in results.items() if "smoothness" in res}
    rows = {label: [s[k]["mean"] for k in keys] for label, s in have.items()}
    spreads = {label: [s[k]["std"] for k in keys] for label, s in have.items()}
    return make_table("Smoothness metrics", header, rows, ["min"] * 4, [2, 2, 4, 4], spreads)


def forecast_settings(results: Results) -> list[str]:
    return list(dict.fromkeys(s for r in results.values() for s in r.get("forecast", {})))


def paper_tables(results: Results, metrics: tuple[str, ...] = ("rrmse_paper", "rrmse_l2"),
                 per_channel: bool = False, tasks: Iterable[TaskSpec] | None = None) -> list[Table]:
    """The paper's table group for these rows: forecasts per setting (each metric of ``metrics``; the paper's
    formula first) and beside them RMSE and ACC per variable, the decoded reconstructions, smoothness, the tasks'
    columns (diffusion/classification; ``tasks``: default :data:`sparta.tasks.TASK_SPECS`) and diffusion's RMSE and
    ACC per variable; with ``per_channel`` the per-channel RRMSE too."""
    tables = []
    for s in forecast_settings(results):
        tables += [forecast_table(results, s, m) for m in metrics]
        blocks = [r["forecast"][s]["per_variable"] for r in results.values()
                  if "per_variable" in r.get("forecast", {}).get(s, {})]
        if blocks:
            tables += [variable_table(results, s, m) for m in variable_metrics_in(blocks)]
    if per_channel:
        tables += [channel_table(results, s) for s in forecast_settings(results)]
    tables += reconstruction_tables(results)
    if any("smoothness" in r for r in results.values()):
        tables.append(smoothness_table(results))
    tasks = _tasks(tasks)
    if any(t.key in r for t in tasks if t.columns for r in results.values()):
        tables.append(downstream_table(results, tasks))
    diffusion = diffusion_variable_table(results)
    return tables + ([diffusion] if diffusion else [])
