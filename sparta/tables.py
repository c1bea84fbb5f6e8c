"""Paper-format Markdown tables built from saved ``evaluation/metrics.json`` results.

Every builder takes ``{row label: results}`` (one results dict per trained model) and
marks the best value of each column in bold.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Results = dict[str, dict]


def _fmt(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown_table(title: str, header: list[str], rows: dict[str, list[float | None]], better: list[str],
                   digits: list[int], spreads: dict[str, list[float | None]] | None = None) -> str:
    """A Markdown table; ``better[j]`` is 'min', 'max' or '' (no mark) for column j."""
    best = []
    for j, rule in enumerate(better):
        values = [r[j] for r in rows.values() if r[j] is not None and not math.isnan(r[j])]
        marked = rule and len(values) > 1
        best.append((min(values) if rule == "min" else max(values)) if marked else None)
    lines = [f"**{title}**", "", "| | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for label, values in rows.items():
        cells = []
        for j, v in enumerate(values):
            cell = _fmt(v, digits[j])
            spread = (spreads or {}).get(label)
            if spread and spread[j]:
                cell += f" ± {_fmt(spread[j], digits[j])}"
            cells.append(f"**{cell}**" if v is not None and v == best[j] else cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def forecast_table(results: Results, setting: str, metric: str = "rrmse", baselines: bool = True) -> str:
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
            rows[f"{name} (baseline)"] = [values[t] for t in leads]
    names = {"rrmse": "RRMSE (%)", "ssim": "SSIM", "psnr": "PSNR (dB)"}
    lb, s = setting[2:].split("_S")
    n_seeds = first.get("seeds", 1)
    title = (f"Autoregressive {names[metric]} - {len(first['curve'][metric])} steps, look-back {lb}, "
             f"sampling interval {s}" + (f" (mean ± std over {n_seeds} seeds)" if n_seeds > 1 else ""))
    rule = "min" if metric == "rrmse" else "max"
    return markdown_table(title, [f"T={t}" for t in leads], rows, [rule] * len(leads), [2] * len(leads), spreads)


def downstream_table(results: Results) -> str:
    """Tables 5 / 9 / 14: conditional latent diffusion and latent classification."""
    cols: list[tuple[str, str, Callable[[dict], float | None], str, int]] = [
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
    return markdown_table("Conditional latent diffusion and latent classification", [c[0] for c in cols], rows,
                          [c[3] for c in cols], [c[4] for c in cols])


def smoothness_table(results: Results) -> str:
    """Tables 4 / 10 / 15: mean temporal and cycle distance (raw and scale-normalised), mean ± std."""
    keys = ["temporal", "cycle", "temporal_normalised", "cycle_normalised"]
    header = ["Mean temporal distance", "Mean cycle distance", "Temporal (normalised)", "Cycle (normalised)"]
    rows = {label: [res["smoothness"][k]["mean"] for k in keys] for label, res in results.items()
            if "smoothness" in res}
    spreads = {label: [res["smoothness"][k]["std"] for k in keys] for label, res in results.items()
               if "smoothness" in res}
    return markdown_table("Smoothness metrics", header, rows, ["min"] * 4, [2, 2, 4, 4], spreads)


def all_tables(results: Results) -> str:
    """Every table the results support: forecasts per setting (RRMSE, SSIM, PSNR), downstream, smoothness."""
    parts = []
    settings = list(dict.fromkeys(s for r in results.values() for s in r.get("forecast", {})))
    for setting in settings:
        for metric in ("rrmse", "ssim", "psnr"):
            parts.append(forecast_table(results, setting, metric))
    if any("diffusion" in r or "classify" in r for r in results.values()):
        parts.append(downstream_table(results))
    if any("smoothness" in r for r in results.values()):
        parts.append(smoothness_table(results))
    return "\n".join(parts)
