"""Paper-format tables built from saved ``evaluation/metrics.json`` results.

Every builder takes ``{row label: results}`` (one results dict per trained model) and
returns a :class:`Table` that renders to Markdown or HTML, the best value of each
column marked in bold.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass

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


def forecast_table(results: Results, setting: str, metric: str = "rrmse", baselines: bool = True) -> Table:
    """Tables 1-3 / 6-8 / 11-13: a forecast metric at the lead times for one (look-back, stride) setting."""
    first = next(r["forecast"][setting] for r in results.values() if setting in r.get("forecast", {}))
    leads = list(first["at"][metric])
    rows, spreads = {}, {}
    for label, res in results.items():
        entry = res.get("forecast", {}).get(setting)
        if entry:
            rows[label] = [entry["at"][metric][t] for t in leads]
            if entry.get("seeds", 1) > 1:
                spreads[label] = [entry["at"][f"{metric}_spread"][t] for t in leads]
    if baselines and metric == "rrmse":
        for name, values in first["baselines"].items():
            if name not in MODEL_BASELINES:
                rows[f"{name} (baseline)"] = [values[t] for t in leads]
        for label, res in results.items():  # a ceiling belongs to its model's decoder: one row per model
            for name in MODEL_BASELINES:
                values = res.get("forecast", {}).get(setting, {}).get("baselines", {}).get(name)
                if values:
                    rows[f"{label}: {name}"] = [values[t] for t in leads]
    names = {"rrmse": "RRMSE (%)", "ssim": "SSIM", "psnr": "PSNR (dB)"}
    lookback, stride = setting[2:].split("_S")
    n_seeds = first.get("seeds", 1)
    title = (f"Autoregressive {names[metric]} - {len(first['curve'][metric])} steps, look-back {lookback}, "
             f"sampling interval {stride}" + (f" (mean ± std over {n_seeds} seeds)" if n_seeds > 1 else ""))
    rule = "min" if metric == "rrmse" else "max"
    return make_table(title, [f"T={t}" for t in leads], rows, [rule] * len(leads), [2] * len(leads), spreads)


def downstream_table(results: Results) -> Table:
    """Tables 5 / 9 / 14: conditional latent diffusion and latent classification."""
    cols: list[tuple[str, str, Callable[[dict], float], str, int]] = [
        ("Diffusion RRMSE (%)", "diffusion", lambda d: d["rrmse"], "min", 2),
        ("Latent density", "diffusion", lambda d: d["density"], "max", 3),
        ("Realism", "diffusion", lambda d: d["realism"], "max", 3),
        ("Std dev", "diffusion", lambda d: d["latent_std"], "min", 4),
        ("Density (std. latents)", "diffusion", lambda d: d["density_std"], "max", 3),
        ("Realism (std. latents)", "diffusion", lambda d: d["realism_std"], "max", 3),
        ("Class. test loss", "classify", lambda d: d["cross_entropy"], "min", 4),
        ("Class. accuracy", "classify", lambda d: d["accuracy"], "max", 3),
    ]
    rows = {label: [fn(res[task]) if task in res else None for _, task, fn, _, _ in cols]
            for label, res in results.items()}
    return make_table("Conditional latent diffusion and latent classification", [c[0] for c in cols], rows,
                      [c[3] for c in cols], [c[4] for c in cols])


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


def paper_tables(results: Results, metrics: tuple[str, ...] = ("rrmse",)) -> list[Table]:
    """The paper's table group for these rows: forecasts per setting, smoothness, diffusion/classification."""
    tables = [forecast_table(results, s, m) for s in forecast_settings(results) for m in metrics]
    if any("smoothness" in r for r in results.values()):
        tables.append(smoothness_table(results))
    if any("diffusion" in r or "classify" in r for r in results.values()):
        tables.append(downstream_table(results))
    return tables
