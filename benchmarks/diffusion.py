"""The conditional latent diffusion of trained runs, in the paper's form and as a residual from its condition.

    python benchmarks/diffusion.py RUN [RUN ...] [--residual false true]

For each run and ``downstream.diffusion_residual`` value, the evaluation's diffusion task as ``sparta evaluate``
runs it (same conditions, seeds and settings, from the run's config), scored on decoded fields: RRMSE (L2, %)
of the mean of the draws beside the same masked conditions decoded directly and the climatology, the fair CRPS
of the draws per variable beside the climatology's (its MAE), and the spread/skill ratio (calibrated:
sqrt((M+1)/M)). Nothing is written into the runs. One markdown table per score.
"""

from __future__ import annotations

import argparse
import math

from sparta.data import open_or_prepare
from sparta.evaluate import Evaluation, diffusion
from sparta.runs import Run


def measure(path: str, residual: bool) -> dict:
    run = Run.open(path)
    ev = Evaluation(run, open_or_prepare(run.config.data, False, prepare=False), progress=False)
    ev.downstream = ev.downstream.model_copy(update={"diffusion_residual": residual})
    return diffusion(ev)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--residual", nargs="+", default=["false", "true"], choices=["false", "true"])
    args = parser.parse_args()
    rows = {(run, mode): measure(run, mode == "true") for run in args.runs for mode in args.residual}
    first = next(iter(rows.values()))
    channels = list(first["probabilistic"]["crps"])
    m = first["samples"]
    print(f"| run | residual | RRMSE (L2) % mean of {m} | decoded condition | climatology |")
    print("|---|---|---|---|---|")
    for (run, mode), r in rows.items():
        print(f"| {run} | {mode} | {r['rrmse_l2']:.2f} | {r['condition_decoded']['rrmse_l2']:.2f} | "
              f"{r['climatology']['rrmse_l2']:.2f} |")
    for key, title in (("crps", "CRPS (display units)"), ("spread_skill", f"spread/skill (calibrated "
                                                                             f"{math.sqrt((m + 1) / m):.2f})")):
        print(f"\n{title}\n\n| run | residual | " + " | ".join(channels) + " |")
        print("|---|---|" + "---|" * len(channels))
        for (run, mode), r in rows.items():
            print(f"| {run} | {mode} | " + " | ".join(f"{r['probabilistic'][key][c]:.3g}" for c in channels) + " |")
        if key == "crps":
            print("| climatology | | " + " | ".join(f"{first['climatology']['crps'][c]:.3g}" for c in channels) + " |")


if __name__ == "__main__":
    main()
