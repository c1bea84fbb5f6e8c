"""Held-back test days through the user's path: ``sparta embed`` (complete or sparse) then ``sparta decode``.

    python benchmarks/embed_decode.py --store data/speedy-quick RUN [RUN ...] [--hidden 0 0.7 0.9 0.95]

For each run and hidden fraction, the test split's days are encoded with that fraction of grid points
hidden at random per day (seed 1), decoded, and scored against the truth per channel and pooled:
RRMSE (L2, %, physical units, unweighted as the report's), area-weighted RMSE in each channel's unit
and the eddy correlation (zonal anomalies, per day, averaged). Climatology (the train split's monthly
means) and persistence (yesterday's field) score the same days, as references. One markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sparta.data import open_store
from sparta.data.store import month_index, monthly_climatology
from sparta.embed import decode, embed
from sparta.metrics import eddy_correlation, lat_weights, rrmse


def _fields(ds: xr.Dataset, store) -> np.ndarray:
    """(time, channel, lat, lon) of the store's channels from a decoded file (one variable per channel)."""
    return np.stack([ds[c].transpose("time", "lat", "lon").values for c in store.channels], axis=1)


def scores(pred: np.ndarray, true: np.ndarray, lat: np.ndarray) -> dict[str, np.ndarray]:
    p, t = torch.from_numpy(pred).double(), torch.from_numpy(true).double()
    w = lat_weights(torch.from_numpy(lat))[:, None]
    rmse = ((p - t).pow(2) * w).mean(dim=(0, 2, 3)).sqrt()
    return {"rrmse": rrmse(p, t, per_channel=True).numpy(), "pooled": float(rrmse(p, t)),
            "rmse": rmse.numpy(), "eddy_r": eddy_correlation(p, t).numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--store", required=True)
    parser.add_argument("--hidden", type=float, nargs="+", default=[0.0, 0.7, 0.9, 0.95])
    args = parser.parse_args()
    store = open_store(args.store)
    a, b = store.split_range("test")
    true = np.asarray(store.read(slice(a, b)), dtype=np.float64)
    rows = []
    climatology = monthly_climatology(store)[month_index(store.times[a:b])]
    rows.append(("climatology", "", scores(climatology, true, store.lat)))
    persistence = np.asarray(store.read(slice(a - 1, b - 1)), dtype=np.float64)
    rows.append(("persistence", "", scores(persistence, true, store.lat)))
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            for hidden in args.hidden:
                h, f = Path(tmp) / "h.nc", Path(tmp) / "f.nc"
                embed(run, store, h, mask_ratio=hidden if hidden > 0 else None, seed=1, overwrite=True, device="cpu")
                with decode(run, h, f, overwrite=True, device="cpu") as ds:
                    pred = _fields(ds, store)[a:b]
                rows.append((Path(run).name, f"{hidden:.0%}", scores(pred, true, store.lat)))
    names = store.channels
    print(f"| | hidden | pooled RRMSE % | {' | '.join(f'{c} RRMSE %' for c in names)} | "
          f"{' | '.join(f'{c} RMSE' for c in names)} | eddy r {'/'.join(names)} |")
    print("|---" * (3 + 2 * len(names) + 1) + "|")
    for name, hidden, s in rows:
        print(f"| {name} | {hidden} | {s['pooled']:.3g} | {' | '.join(f'{v:.3g}' for v in s['rrmse'])} | "
              f"{' | '.join(f'{v:.3g}' for v in s['rmse'])} | {'/'.join(f'{v:.2f}' for v in s['eddy_r'])} |")


if __name__ == "__main__":
    main()
