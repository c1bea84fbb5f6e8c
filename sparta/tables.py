"""Paper-format tables built from saved ``evaluation/metrics.json`` results.

Every builder takes ``{row label: results}`` (one results dict per trained model) and
returns a :class:`Table` that renders to Markdown or HTML, the best value of each
column marked in bold.

The forecast and smoothness tables have layouts of their own (leads and baselines; mean ± std).
Tasks with scalar results declare their columns in their entry of ``sparta.evaluate.TASKS``
(:class:`Column`), and :func:`downstream_table` lays them out, so a new task of that kind needs
no change here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparta.downstream.forecast import LIM_SETTING
from sparta.metrics import FIELD_METRICS

if TYPE_CHECKING:
    from sparta.evaluate import Task

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
               digits: list[int], spreads: dict[str, list[float | None]] | None = None) -> Table:
    """``better[j]`` is 'min', 'max' or '' (no mark) for column j; marks need at least two rows."""
    best_values = []
    for j, rule in enumerate(better):
        values = [r[j] for r in rows.values() if r[j] is not None and not math.isnan(r[j])]
        best_values.append((min(values) if rule == "min" else max(values)) if rule and len(values) > 1 else None)
    cells, marks = {}, {}
    for label, values in rows.items():
        spread = (spreads or {}).get(label)
        cells[label] = [_fmt(v, digits[j]) + (f" ± {_fmt(spread[j], digits[j])}" if spread and spread[j] else "")
                        for j, v in enumerate(values)]
        marks[label] = [v is not None and v == best_values[j] for j, v in enumerate(values)]
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
    if baselines:
        for name, values in _baselines(first, metric).items():
            if name not in MODEL_BASELINES:
                rows[f"{name} (baseline)"] = [values[t] for t in leads]
        for label, res in results.items():  # a ceiling belongs to its model's decoder: one row per model
            for name in MODEL_BASELINES:
                values = _baselines(res.get("forecast", {}).get(setting, {}), metric).get(name)
                if values:
                    rows[f"{label}: {name}"] = [values[t] for t in leads]
    n_seeds = first.get("seeds", 1)
    steps = max(map(len, first["curve"].values()), default=0)  # the every-lead curves; SSIM/PSNR are at the leads only
    title = (f"Autoregressive {FIELD_METRICS[metric].table_name} - {steps} steps, {describe_setting(setting)}"
             + (f" (mean ± std over {n_seeds} seeds)" if n_seeds > 1 else ""))
    rule = "min" if metric in LOWER_IS_BETTER else "max"
    return make_table(title, [f"T={t}" for t in leads], rows, [rule] * len(leads), [2] * len(leads), spreads)


def channel_table(results: Results, setting: str) -> Table:
    """Forecast RRMSE per channel at the lead times, by our L2 formula (not a paper table).

    Per channel the paper's formula divides by the channel's mean, near 0 for u850 and v850, which
    makes it blow up there; ||e|| / ||truth|| stays well conditioned.
    """
    rows = {}
    for label, res in results.items():
        entry = res.get("forecast", {}).get(setting, {})
        per_lead = entry.get("rrmse_l2_per_channel", entry.get("rrmse_per_channel", {}))
        for t, per_channel in per_lead.items():
            rows[f"{label}, T={t}"] = list(per_channel.values())
            channels = list(per_channel)
    title = (f"Forecast RRMSE (L2, ours, %) per channel, {describe_setting(setting)}: "
             "||pred - true|| / ||true|| per variable (the paper's RMSE / mean(truth) divides by means near 0 "
             "for u850 and v850)")
    return make_table(title, channels, rows, [""] * len(channels), [2] * len(channels))


@dataclass(frozen=True)
class Column:
    """A column of :func:`downstream_table`: one scalar of a task's results, ``results[task.key][key]`` (or
    ``[old_key]``, its name in metrics.json written before a rename). ``better``: 'min', 'max' or '' (no mark);
    ``paper``: the paper's definition (those columns come first)."""

    header: str
    key: str
    better: str
    digits: int
    paper: bool = False
    old_key: str | None = None

    def get(self, result: dict) -> float | None:
        return result.get(self.key, result.get(self.old_key) if self.old_key else None)


def _tasks(tasks: Iterable[Task] | None) -> list[Task]:
    if tasks is None:
        from sparta.evaluate import TASKS  # the task table (it imports torch): read when a table is built

        tasks = TASKS.values()
    return list(tasks)


def downstream_table(results: Results, tasks: Iterable[Task] | None = None) -> Table:
    """Tables 5 / 9 / 14: the scalar results of the tasks that declare table columns (``Task.columns``; of
    ``tasks``, default :data:`sparta.evaluate.TASKS`): conditional latent diffusion and latent classification.

    The paper's columns first, by the paper's definitions (RRMSE formula, density and realism of the
    mean of the draws, std of all generated values); ours beside them, named; each group in task order.
    """
    tasks = [t for t in _tasks(tasks) if t.columns]
    cols = [(t.key, c) for paper in (True, False) for t in tasks for c in t.columns if c.paper is paper]
    rows = {label: [c.get(res[key]) if key in res else None for key, c in cols] for label, res in results.items()}
    names = [t.table_name for t in tasks]
    title = " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
    return make_table(f"{title[:1].upper()}{title[1:]} (the paper's columns first, then ours)",
                      [c.header for _, c in cols], rows, [c.better for _, c in cols], [c.digits for _, c in cols])


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
                 per_channel: bool = False, tasks: Iterable[Task] | None = None) -> list[Table]:
    """The paper's table group for these rows: forecasts per setting (each metric of ``metrics``; the paper's
    formula first), smoothness, the tasks' columns (diffusion/classification; ``tasks``: default
    :data:`sparta.evaluate.TASKS`); with ``per_channel`` the per-channel RRMSE too."""
    tables = [forecast_table(results, s, m) for s in forecast_settings(results) for m in metrics]
    if per_channel:
        tables += [channel_table(results, s) for s in forecast_settings(results)]
    if any("smoothness" in r for r in results.values()):
        tables.append(smoothness_table(results))
    tasks = _tasks(tasks)
    if any(t.key in r for t in tasks if t.columns for r in results.values()):
        tables.append(downstream_table(results, tasks))
    return tables
