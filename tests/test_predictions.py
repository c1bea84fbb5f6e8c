"""Predictions as labelled Datasets: their layout, their round trip to fields, atomic writing, and their scores."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sparta import metrics, predictions, scores
from sparta.grids import grid_coords


def _store(*grids: tuple[str, list[str]]):
    """A stand-in with the parts a prediction reads: each grid's coordinates, channels and units."""
    parts = []
    for grid, channels in grids:
        lat, lon = grid_coords(grid)
        parts.append(SimpleNamespace(grid=grid, lat=lat, lon=lon, channels=channels,
                                     units={c: "K" for c in channels}))
    return SimpleNamespace(parts=parts)


def test_a_prediction_has_one_variable_per_channel_with_named_dims_and_round_trips():
    store = _store(("8x4", ["t2m", "z850"]))
    fields = torch.randn(3, 5, 2, 4, 8)  # (hidden, time, channel, lat, lon)
    times = np.arange("2000-01-01", "2000-01-06", dtype="datetime64[D]")
    ds = predictions.to_dataset(fields, store, ("hidden", "time"), {"hidden": [0.0, 0.5, 0.9], "time": times})
    assert list(ds.data_vars) == ["t2m", "z850"] and ds["z850"].dims == ("hidden", "time", "lat", "lon")
    assert ds["t2m"].attrs["units"] == "K" and np.allclose(ds["lat"], grid_coords("8x4")[0])
    assert torch.equal(predictions.to_fields(ds.sel(hidden=0.5), store), fields[1])
    assert torch.equal(predictions.to_fields(ds, store, ("hidden", "time")), fields)


def test_variables_on_several_grids_keep_each_grids_coordinates():
    store = _store(("8x4", ["t2m"]), ("16x8", ["z850", "u850"]))
    fields = [torch.randn(2, 1, 4, 8), torch.randn(2, 2, 8, 16)]
    ds = predictions.to_dataset(fields, store, ("time",), {"time": np.arange(2)})
    assert ds["t2m"].dims == ("time", "lat_8x4", "lon_8x4") and ds["u850"].dims == ("time", "lat_16x8", "lon_16x8")
    back = predictions.to_fields(ds, store)
    assert all(torch.equal(a, b) for a, b in zip(back, fields, strict=True))


def test_predictions_missing_a_variable_are_refused():
    store = _store(("8x4", ["t2m", "z850"]))
    ds = predictions.to_dataset(torch.zeros(2, 2, 4, 8), store, ("time",), {"time": np.arange(2)})
    with pytest.raises(ValueError, match="lack the store's variable.s. z850"):
        predictions.to_fields(ds.drop_vars("z850"), store)


def test_an_interrupted_write_keeps_the_previous_predictions(tmp_path):
    store = _store(("8x4", ["t2m"]))

    def blocks(value: float, fail_after: int | None = None):
        for k in range(3):
            if k == fail_after:
                raise KeyboardInterrupt
            yield predictions.to_dataset(torch.full((1, 2, 1, 4, 8), value), store, ("hidden", "time"),
                                         {"hidden": [k / 10], "time": np.arange(2)})

    path = predictions.write_predictions(tmp_path, "reconstruction", blocks(1.0), "hidden")
    assert predictions.open_predictions(tmp_path, "reconstruction").sizes["hidden"] == 3
    with pytest.raises(KeyboardInterrupt):
        predictions.write_predictions(tmp_path, "reconstruction", blocks(2.0, fail_after=2), "hidden")
    kept = predictions.open_predictions(tmp_path, "reconstruction")
    assert float(kept["t2m"].max()) == 1.0 and kept.sizes["hidden"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["reconstruction.zarr"]  # no partial store left
    assert predictions.open_predictions(tmp_path, "forecast") is None


def test_scores_of_a_known_error():
    """Every day's t2m off by 2 K and z850 exact: RMSE 2 K and 0, ACC 1 where the anomaly is right, each
    per-variable metric in its display unit (specific humidity in g/kg), the pooled RRMSE by its formula."""
    g = torch.Generator().manual_seed(0)
    truth = 280.0 + torch.randn(6, 3, 16, 32, generator=g)
    truth[:, 2] = 5e-3 + 1e-3 * torch.rand(6, 16, 32, generator=g)  # specific humidity, kg/kg
    climatology = truth + torch.randn(6, 3, 16, 32, generator=g).float()
    pred = truth.clone()
    pred[:, 0] += 2.0
    ref = scores.Reference(truth, climatology, metrics.lat_weights(torch.as_tensor(grid_coords("32x16")[0])),
                           (truth.amin((0, 2, 3)), truth.amax((0, 2, 3))), ["t2m", "z850", "q850"],
                           {"t2m": 1.0, "z850": 1.0, "q850": 1e3})
    table = scores.score(pred, ref)
    assert set(table.data_vars) == {*metrics.FIELD_METRICS, *metrics.VARIABLE_METRICS}
    rmse = table["rmse"].sel(variable=["t2m", "z850", "q850"]).values
    assert rmse == pytest.approx([2.0, 0.0, 0.0], abs=1e-5)
    assert float(table["acc"].sel(variable="z850")) == pytest.approx(1.0)
    assert float(table["rrmse_l2"]) == pytest.approx(float(metrics.rrmse(pred, truth)))
    off = truth.clone()
    off[:, 2] += 1e-3  # 1 g/kg of specific humidity everywhere
    assert float(scores.score(off, ref, pooled=())["rmse"].sel(variable="q850")) == pytest.approx(1.0, rel=1e-3)
    assert scores.pooled(table)["rrmse_l2"] == float(table["rrmse_l2"])
    assert scores.per_variable(table)["rmse"]["t2m"] == pytest.approx(2.0, abs=1e-5)


def test_overwriting_a_run_removes_its_predictions_and_scores_but_never_a_foreign_file(tmp_path):
    from sparta.config import load_config
    from sparta.runs import Run, RunError

    cfg = load_config("micro")
    run = Run.create(cfg, tmp_path / "run")
    store = _store(("8x4", ["t2m"]))
    block = predictions.to_dataset(torch.zeros(1, 2, 1, 4, 8), store, ("hidden", "time"),
                                   {"hidden": [0.0], "time": np.arange(2)})
    predictions.write_predictions(run.evaluation, "reconstruction", [block], "hidden")
    scores.write(scores.score(torch.zeros(2, 1, 16, 32), scores.Reference(
        torch.ones(2, 1, 16, 32), torch.ones(2, 1, 16, 32), torch.ones(16), (torch.zeros(1), torch.ones(1)),
        ["t2m"], {"t2m": 1.0})), run.evaluation, "reconstruction")
    (run.evaluation / "maps").mkdir()
    np.savez(run.evaluation / "maps" / "reconstruction_test_day.npz", x=np.zeros(1))
    Run.create(cfg, run.path, overwrite=True)
    assert not run.evaluation.exists()

    predictions.write_predictions(run.evaluation, "reconstruction", [block], "hidden")
    (run.evaluation / "predictions" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="predictions/notes.txt"):
        Run.create(cfg, run.path, overwrite=True)
    assert (run.evaluation / "predictions" / "notes.txt").read_text() == "mine"


def test_valid_times_are_found_among_the_days_or_refused():
    days = np.arange("2000-01-01", "2000-01-10", dtype="datetime64[D]")
    assert predictions.day_indices(days, days[[2, 3, 8]].astype("datetime64[ns]")).tolist() == [2, 3, 8]
    assert predictions.day_indices(days, np.array(["2000-01-10"], dtype="datetime64[ns]")) is None
    assert predictions.day_indices(days, np.array(["1999-12-31T12"], dtype="datetime64[ns]")) is None
