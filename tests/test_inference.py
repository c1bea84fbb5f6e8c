"""sparta.inference, the Python API: the README's example runs as written, and agrees with `sparta embed`/`decode`."""

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sparta import inference
from sparta.config import load_config
from sparta.data import prepare_from_config
from sparta.data.synthetic import synthetic_era5
from sparta.embed import decode, embed
from sparta.runs import Run
from sparta.training import Trainer

README = Path(__file__).resolve().parents[1] / "README.md"
DAYS = 20


def readme_example() -> str:
    """The python code block of the README's "Python API" section."""
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one python example"
    return blocks[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, micro_store) -> Path:
    """A directory laid out as the README example expects: runs/quick/sparta and my_era5_daily.zarr."""
    root = tmp_path_factory.mktemp("api")
    cfg = load_config("micro", [f"data.store={micro_store.path}", "train.steps_per_epoch=1"])
    Trainer(Run.create(cfg, root / "runs" / "quick" / "sparta"), micro_store, progress=False).fit()
    synthetic_era5(micro_store.variables, micro_store.grid, start="2001-03-01", n_days=DAYS,
                   seed=7).to_zarr(root / "my_era5_daily.zarr", zarr_format=2)
    return root


def test_readme_example_runs_as_written(workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)
    h, h_sparse, fields = scope["h"], scope["h_sparse"], scope["fields"]
    assert isinstance(h, xr.DataArray) and h.dims == ("time", "feature") and h.shape == (DAYS, 16)
    assert h.attrs["masking"] == "none" and h_sparse.attrs["masking"] == "fixed"
    assert not np.allclose(h.values, h_sparse.values)  # the mask changes the input
    assert isinstance(fields, xr.Dataset) and set(fields.data_vars) == {"t2m", "z850", "u850", "v850", "q850"}
    assert fields["t2m"].dims == ("time", "lat", "lon") and fields["t2m"].attrs["units"] == "K"
    assert fields["z850"].attrs["units"] == "m**2 s**-2"
    np.testing.assert_array_equal(fields["time"].values, h["time"].values)
    assert "K" in capsys.readouterr().out


def test_api_matches_embed_and_decode_commands(workspace, tmp_path):
    """The API on an xarray Dataset = `sparta embed` on that data prepared as a store, then `sparta decode`."""
    model = inference.load(workspace / "runs" / "quick" / "sparta", device="cpu")
    ds = xr.open_zarr(workspace / "my_era5_daily.zarr")
    cfg = load_config("micro", [f"data.source={workspace / 'my_era5_daily.zarr'}", f"data.store={tmp_path / 'store'}"])
    store = prepare_from_config(cfg.data, tmp_path / "store", progress=False)
    written = embed(workspace / "runs" / "quick" / "sparta", store, tmp_path / "h.nc", mask_ratio=0.5, seed=3,
                    device="cpu")
    h = model.embed_dataset(ds, mask_ratio=0.5, seed=3)
    np.testing.assert_allclose(h.values, written["embedding"].values, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(h["time"].values, written["time"].values)
    decoded = decode(workspace / "runs" / "quick" / "sparta", tmp_path / "h.nc", tmp_path / "f.nc", device="cpu")
    fields = model.decode_dataset(written["embedding"])
    for name in decoded.data_vars:
        np.testing.assert_allclose(fields[name].values, decoded[name].values, rtol=1e-5, atol=1e-3)
        assert fields[name].attrs["units"] == decoded[name].attrs["units"]
    np.testing.assert_allclose(fields["lat"].values, decoded["lat"].values)


def test_fixed_mask_must_match_the_grid(workspace):
    model = inference.load(workspace / "runs" / "quick" / "sparta", device="cpu")
    ds = xr.open_zarr(workspace / "my_era5_daily.zarr")
    with pytest.raises(inference.DataError, match="shape"):
        model.embed_dataset(ds, mask=np.ones((3, 4), dtype=bool))
    with pytest.raises(inference.DataError, match="mutually exclusive"):
        model.embed_dataset(ds, mask=np.ones((32, 64), dtype=bool), mask_ratio=0.5)


def test_decoded_fields_embed_again(workspace):
    """What decode_dataset returns is accepted by embed_dataset (same names, units and coordinates)."""
    model = inference.load(workspace / "runs" / "quick" / "sparta", device="cpu")
    h = model.embed_dataset(xr.open_zarr(workspace / "my_era5_daily.zarr"))
    fields = model.decode_dataset(h)
    again = model.embed_dataset(fields)
    assert again.shape == h.shape and np.isfinite(again.values).all()
    np.testing.assert_array_equal(again["time"].values, h["time"].values)
    # the decoded day re-encoded and decoded again stays near itself (the autoencoding is close to a projection)
    assert float(abs(model.decode_dataset(again)["t2m"] - fields["t2m"]).mean()) < 1.0


def test_nan_holes_are_hidden_points(workspace):
    """``ds.where(observed)`` reads as the mask ``observed``; NaNs of one variable hide that variable only."""
    model = inference.load(workspace / "runs" / "quick" / "sparta", device="cpu")
    ds = xr.open_zarr(workspace / "my_era5_daily.zarr").load()
    rng = np.random.default_rng(0)
    observed = xr.DataArray(rng.random((ds.sizes["latitude"], ds.sizes["longitude"])) < 0.3,
                            coords={"latitude": ds["latitude"], "longitude": ds["longitude"]},
                            dims=("latitude", "longitude"))
    holed = model.embed_dataset(ds.where(observed))
    assert np.isfinite(holed.values).all()
    masked = model.embed_dataset(ds, mask=observed.rename(latitude="lat", longitude="lon"))
    np.testing.assert_allclose(holed.values, masked.values, rtol=1e-5, atol=1e-6)
    one_variable = ds.assign({"2m_temperature": ds["2m_temperature"].where(observed)})
    partial = model.embed_dataset(one_variable).values
    assert not np.allclose(partial, model.embed_dataset(ds).values) and not np.allclose(partial, holed.values)
    with pytest.raises(inference.DataError, match="NaN values, which mark hidden points"):
        model.embed_dataset(ds.where(observed), mask_ratio=0.5)
    with pytest.raises(inference.DataError, match="nothing is observed"):
        model.embed_dataset(ds.where(False))


def test_sub_daily_steps_are_averaged_to_days(workspace):
    model = inference.load(workspace / "runs" / "quick" / "sparta", device="cpu")
    daily = xr.open_zarr(workspace / "my_era5_daily.zarr").load()
    hours = [daily.assign_coords(time=daily["time"] + np.timedelta64(6 * k, "h")) + (k - 1.5) for k in range(4)]
    six_hourly = xr.concat(hours, "time").sortby("time")  # each day's four steps average to the daily field
    np.testing.assert_allclose(model.embed_dataset(six_hourly).values, model.embed_dataset(daily).values,
                               rtol=1e-4, atol=1e-4)


def test_masks_may_differ_per_channel(workspace):
    """A (variable, lat, lon) mask named by channel: t2m at stations and nothing else reads as the same NaN holes."""
    model = inference.load(workspace / "runs" / "quick" / "sparta", device="cpu")
    ds = xr.open_zarr(workspace / "my_era5_daily.zarr").load()
    lat, lon = ds["latitude"].sortby("latitude").values, ds["longitude"].values
    stations = np.random.default_rng(1).random((len(lat), len(lon))) < 0.3
    per_channel = np.zeros((len(model.channels), len(lat), len(lon)), dtype=bool)
    per_channel[model.channels.index("t2m")] = stations
    mask = xr.DataArray(per_channel[::-1], dims=("variable", "lat", "lon"),  # any channel order
                        coords={"variable": model.channels[::-1], "lat": lat, "lon": lon})
    h = model.embed_dataset(ds, mask=mask).values
    observed = xr.DataArray(stations, coords={"latitude": lat, "longitude": lon}, dims=("latitude", "longitude"))
    holed = ds.map(lambda da: da.where(observed) if da.name == "2m_temperature" else da.where(False))
    np.testing.assert_allclose(h, model.embed_dataset(holed).values, rtol=1e-5, atol=1e-6)
    assert not np.allclose(h, model.embed_dataset(ds, mask=stations).values)
    with pytest.raises(inference.DataError, match="it needs exactly the model's"):
        model.embed_dataset(ds, mask=mask.assign_coords(variable=["t2"] + model.channels[1:]))
