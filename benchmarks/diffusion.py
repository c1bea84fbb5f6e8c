"""The conditional latent diffusion of trained runs under other downstream settings, scored as the evaluation does.

    python benchmarks/diffusion.py RUN [RUN ...] [--variant SETTINGS ...]

A variant is comma-separated ``downstream.*`` overrides, e.g. ``diffusion_residual=true`` or
``beta_start=5e-4,beta_end=0.1`` ("paper" = the run's own settings); the default variants are the paper's
target and the residual one. For each run and variant, the evaluation's diffusion task as ``sparta evaluate``
runs it (same conditions, seeds and other settings, from the run's config), scored on decoded fields: RRMSE
(L2, %) of the mean of the draws beside the same masked conditions decoded directly and the climatology, the
fair CRPS of the draws per variable beside the climatology's (its MAE), the spread/skill ratio (calibrated:
sqrt((M+1)/M)) and the spread of one condition's draws in standardised latent units. Nothing is written into
the runs. One markdown table per score.
"""

from __future__ import annotations

import argparse
import math

from sparta.config import DownstreamConfig
from sparta.data import open_or_prepare
from sparta.evaluation import Evaluation
from sparta.evaluation.diffusion import diffusion
from sparta.runs import Run


def overrides(variant: str) -> dict[str, str]:
    """``"a=1,b=2"`` -> ``{"a": "1", "b": "2"}``; ``"paper"`` -> no override."""
    if variant == "paper":
        return {}
    pairs = [item.split("=", 1) for item in variant.split(",")]
    unknown = [key for key, *_ in pairs if key not in DownstreamConfig.model_fields]
    if unknown or any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"variant '{variant}': need downstream key=value pairs; unknown keys {unknown}")
    return dict(pairs)


def measure(path: str, variant: str) -> dict:
    run = Run.open(path)
    ev = Evaluation(run, open_or_prepare(run.config.data, False, prepare=False), progress=False)
    ev.downstream = DownstreamConfig.model_validate({**ev.downstream.model_dump(), **overrides(variant)})
    return diffusion(ev)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--variant", nargs="+", default=["paper", "diffusion_residual=true"])
    args = parser.parse_args()
    for variant in args.variant:
        overrides(variant)  # a wrong key fails before any training
    rows = {(run, variant): measure(run, variant) for run in args.runs for variant in args.variant}
    first = next(iter(rows.values()))
    channels = list(first["probabilistic"]["crps"])
    m = first["samples"]
    print(f"| run | variant | RRMSE (L2) % mean of {m} | decoded condition | climatology | spread of a condition's "
          "draws (standardised) |")
    print("|---|---|---|---|---|---|")
    for (run, variant), r in rows.items():
        print(f"| {run} | {variant} | {r['rrmse_l2']:.2f} | {r['condition_decoded']['rrmse_l2']:.2f} | "
              f"{r['climatology']['rrmse_l2']:.2f} | {r['latent_std_per_condition_standardised']:.3g} |")
    for key, title in (("crps", "CRPS (display units)"), ("spread_skill", f"spread/skill (calibrated "
                                                                             f"{math.sqrt((m + 1) / m):.2f})")):
        print(f"\n{title}\n\n| run | variant | " + " | ".join(channels) + " |")
        print("|---|---|" + "---|" * len(channels))
        for (run, variant), r in rows.items():
            print(f"| {run} | {variant} | " + " | ".join(f"{r['probabilistic'][key][c]:.3g}" for c in channels) + " |")
        if key == "crps":
            print("| climatology | | " + " | ".join(f"{first['climatology']['crps'][c]:.3g}" for c in channels) + " |")


if __name__ == "__main__":
    main()
