"""Held-back test days through the user's path: ``sparta embed`` (complete or sparse) then ``sparta decode``.

    python benchmarks/embed_decode.py --store data/speedy-quick RUN [RUN ...] [--hidden 0 0.7 0.9 0.95]

For each run and hidden fraction, the test split's days are encoded with that fraction of grid points
hidden at random per day (seed 1), decoded, and scored against the truth per channel and pooled:
RRMSE (L2, %, physical units, unweighted as the report's), area-weighted RMSE in each channel's display unit (q in g/kg),
the anomaly correlation (ACC, from the train split's 31-day smoothed day-of-year climatology, as the
report's) and the eddy correlation (zonal anomalies, per day, averaged). That climatology and
persistence (yesterday's field) score the same days, as references. One markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sparta.climatology import day_of_year, day_of_year_climatology
from sparta.data import open_store
from sparta.embed import decode, embed
from sparta.metrics import anomaly_correlation, area_mse, display_unit, eddy_correlation, lat_weights, rrmse


def _fields(ds: xr.Dataset, store) -> np.ndarray:
    """(time, channel, lat, lon) of the store's channels from a decoded file (one variable per channel)."""
    return np.stack([ds[c].transpose("time", "lat", "lon").values for c in store.channels], axis=1)


def scores(pred: np.ndarray, true: np.ndarray, climatology: np.ndarray, store) -> dict[str, np.ndarray]:
    """RMSE in each channel's display unit (q in g/kg), as the report gives it."""
    p, t, c = (torch.from_numpy(a).double() for a in (pred, true, climatology))
    w = lat_weights(torch.from_numpy(store.lat))
    scale = np.array([display_unit((store.units or {}).get(name))[1] for name in store.channels])
    return {"rrmse": rrmse(p, t, per_channel=True).numpy(), "pooled": float(rrmse(p, t)),
            "rmse": area_mse(p, t, w).mean(0).sqrt().numpy() * scale, "acc": anomaly_correlation(p, t, c, w).mean(0).numpy(),
            "eddy_r": eddy_correlation(p, t).numpy()}


def measure(store_path: str, runs: list[str], hidden: list[float]) -> tuple[list[str], list[tuple[str, str, dict]]]:
    """The store's channels and one ``(name, hidden, scores)`` row per reference and per run and hidden fraction."""
    store = open_store(store_path)
    a, b = store.split_range("test")
    true = np.asarray(store.read(slice(a, b)), dtype=np.float64)
    climatology = day_of_year_climatology(store)[day_of_year(store.times[a:b]) - 1].astype(np.float64)
    persistence = np.asarray(store.read(slice(a - 1, b - 1)), dtype=np.float64)
    rows = [(name, "", scores(ref, true, climatology, store))
            for name, ref in (("climatology", climatology), ("persistence", persistence))]
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            for fraction in hidden:
                h, f = Path(tmp) / "h.nc", Path(tmp) / "f.nc"
                embed(run, store, h, mask_ratio=fraction if fraction > 0 else None, seed=1, overwrite=True,
                      device="cpu")
                with decode(run, h, f, overwrite=True, device="cpu") as ds:
                    pred = _fields(ds, store)[a:b]
                rows.append((Path(run).name, f"{fraction:.0%}", scores(pred, true, climatology, store)))
    return list(store.channels), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--store", required=True)
    parser.add_argument("--hidden", type=float, nargs="+", default=[0.0, 0.7, 0.9, 0.95])
    args = parser.parse_args()
    names, rows = measure(args.store, args.runs, args.hidden)
    print(f"| | hidden | pooled RRMSE % | {' | '.join(f'{c} RMSE' for c in names)} | "
          f"{' | '.join(f'{c} ACC' for c in names)} | eddy r {'/'.join(names)} |")
    print("|---" * (3 + 2 * len(names) + 1) + "|")
    for name, fraction, s in rows:
        print(f"| {name} | {fraction} | {s['pooled']:.3g} | {' | '.join(f'{v:.3g}' for v in s['rmse'])} | "
              f"{' | '.join(f'{v:.3f}' for v in s['acc'])} | {'/'.join(f'{v:.2f}' for v in s['eddy_r'])} |")


if __name__ == "__main__":
    main()
