"""The quick preset's comparison over training seeds: decoded test days and forecasts, mean ± std.

    python benchmarks/quick_comparison.py --store data/speedy-quick runs/quick runs/quick-s1 runs/quick-s2

Each positional argument is one `sparta reproduce` grid (one training seed) holding the same models
(`--models`, default sparta autoencoder pca). Decoded test days go through `sparta embed` + `sparta
decode` (:mod:`embed_decode`) at each `--hidden` fraction; forecasts are read from each run's
`evaluation/metrics.json` at `--leads` (default 1, 2, 5 and 10) for `--settings` (default the paper's
LB30_S1 LSTM and the LIM). Per-variable RMSE (display units) and ACC, mean ± sample std over the grids, beside
persistence and the climatology of the same days; then, per column, the best model and whether its
lead over the runner-up exceeds the two seed spreads (mean ± std intervals that do not overlap).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from embed_decode import measure


def _cell(values: list[float], digits: int) -> str:
    mean = float(np.mean(values))
    return f"{mean:.{digits}f}" + (f" ± {float(np.std(values, ddof=1)):.{digits}f}" if len(values) > 1 else "")


def _winner(column: dict[str, list[float]], lower_is_better: bool) -> str:
    """The best model of a column, starred when it is ahead of the runner-up by more than both seed spreads
    (never with one seed: no spread is known)."""
    stats = {name: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else float("inf"))
             for name, v in column.items()}
    ranked = sorted(stats, key=lambda n: stats[n][0], reverse=not lower_is_better)
    (m1, s1), (m2, s2) = stats[ranked[0]], stats[ranked[1]]
    return ranked[0] + ("*" if abs(m1 - m2) > s1 + s2 else "")


WINNER_NOTE = "* = ahead of the runner-up by more than the two seed spreads (their mean ± std intervals do not overlap)"


def _table(title: str, header: list[str], rows: dict[str, list[str]]) -> str:
    lines = [f"**{title}**", "", "| | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows.items()]
    return "\n".join(lines) + "\n"


def decoded(store: str, grids: list[Path], models: list[str], hidden: list[float]) -> str:
    per_model: dict[tuple[str, str], list[dict]] = {}
    channels, references = [], []
    for grid in grids:
        channels, rows = measure(store, [str(grid / m) for m in models], hidden)
        references = [r for r in rows if r[1] == ""]
        for name, fraction, scores in rows:
            if fraction:
                per_model.setdefault((name, fraction), []).append(scores)
    header = ["pooled RRMSE %"] + [f"{c} RMSE" for c in channels] + [f"{c} ACC" for c in channels]
    rows = {f"{name}, {fraction} hidden": [_cell([s["pooled"] for s in runs], 3)]
            + [_cell([s["rmse"][j] for s in runs], 3) for j in range(len(channels))]
            + [_cell([s["acc"][j] for s in runs], 3) for j in range(len(channels))]
            for (name, fraction), runs in per_model.items()}
    rows |= {f"{name} (baseline)": [f"{s['pooled']:.3f}"] + [f"{v:.3f}" for v in s["rmse"]]
             + [f"{v:.3f}" for v in s["acc"]] for name, _, s in references}
    best = {}
    for fraction in dict.fromkeys(f for _, f in per_model):
        of = {name: runs for (name, f), runs in per_model.items() if f == fraction}
        best[f"{fraction} hidden"] = ([_winner({n: [s["pooled"] for s in r] for n, r in of.items()}, True)]
                                      + [_winner({n: [s["rmse"][j] for s in r] for n, r in of.items()}, True)
                                         for j in range(len(channels))]
                                      + [_winner({n: [s["acc"][j] for s in r] for n, r in of.items()}, False)
                                         for j in range(len(channels))])
    return (_table(f"Decoded test days (embed + decode), mean ± std over {len(grids)} training seeds", header, rows)
            + "\n" + _table(f"Best model of each column; {WINNER_NOTE}", header, best))


def forecasts(grids: list[Path], models: list[str], settings: list[str], leads: list[int]) -> str:
    out = []
    for setting in settings:
        runs = {m: [json.loads((g / m / "evaluation" / "metrics.json").read_text())["forecast"][setting]
                    for g in grids] for m in models}
        channels = list(next(iter(runs.values()))[0]["per_variable"]["rmse"])
        header = [f"{c} RMSE" for c in channels] + [f"{c} ACC" for c in channels]
        rows, best = {}, {}
        for t in leads:
            for m, entries in runs.items():
                rows[f"{m}, T={t}"] = ([_cell([e["per_variable"]["rmse"][c][t - 1] for e in entries], 3) for c in channels]
                                       + [_cell([e["per_variable"]["acc"][c][t - 1] for e in entries], 3) for c in channels])
            baselines = next(iter(runs.values()))[0]["variable_baselines"]
            for name in ("persistence", "climatology"):
                rows[f"{name} (baseline), T={t}"] = ([f"{baselines[name]['rmse'][c][t - 1]:.3f}" for c in channels]
                                                     + [f"{baselines[name]['acc'][c][t - 1]:.3f}" for c in channels])
            best[f"T={t}"] = [_winner({m: [e["per_variable"][metric][c][t - 1] for e in entries]
                                       for m, entries in runs.items()}, metric == "rmse")
                              for metric in ("rmse", "acc") for c in channels]
        out.append(_table(f"Forecasts {setting}: RMSE (display units) and ACC per variable, mean ± std over "
                          f"{len(grids)} training seeds", header, rows) + "\n"
                   + _table(f"Forecasts {setting}: best model of each column; {WINNER_NOTE}", header, best))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grids", nargs="+", type=Path)
    parser.add_argument("--store", required=True)
    parser.add_argument("--models", nargs="+", default=["sparta", "autoencoder", "pca"])
    parser.add_argument("--hidden", type=float, nargs="+", default=[0.0, 0.7, 0.9, 0.95])
    parser.add_argument("--settings", nargs="+", default=["LB30_S1", "LIM"])
    parser.add_argument("--leads", type=int, nargs="+", default=[1, 2, 5, 10],
                        help="forecast leads (days) to tabulate; the paper's tables: 25 50 75 100")
    parser.add_argument("--no-decode", action="store_true", help="forecasts only (no embed + decode)")
    args = parser.parse_args()
    if not args.no_decode:
        print(decoded(args.store, args.grids, args.models, args.hidden))
    print(forecasts(args.grids, args.models, args.settings, args.leads))


if __name__ == "__main__":
    main()
