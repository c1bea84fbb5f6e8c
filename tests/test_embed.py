"""`sparta embed` / `sparta decode`: users' own (sparse) data in, embeddings and decoded fields out."""

import shutil

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from sparta.checkpoint import load_checkpoint, save_checkpoint
from sparta.cli import app
from sparta.config import load_config, validate
from sparta.data.store import DataError, PreparedStore, write_store
from sparta.embed import decode, embed, load_observation_mask
from sparta.inference import load_frozen
from sparta.runs import Run
from sparta.seeding import generator
from sparta.training import Trainer

DAYS = 20


@pytest.fixture(scope="module")
def run(tmp_path_factory, micro_store) -> Run:
    cfg = load_config("micro", [f"data.store={micro_store.path}", "train.steps_per_epoch=1"])
    run = Run.create(cfg, tmp_path_factory.mktemp("embed") / "run")
    return Trainer(run, micro_store, progress=False).fit()


@pytest.fixture(scope="module")
def user_store(tmp_path_factory, micro_store) -> PreparedStore:
    """The user's own data: 20 days on the model's grid and variables, with their own statistics."""
    return write_store(tmp_path_factory.mktemp("user") / "store", [np.asarray(micro_store.fields[:DAYS])],
                       micro_store.times[:DAYS], micro_store.variables, micro_store.lat, micro_store.lon, "user")


@pytest.fixture(scope="module")
def frozen(run, user_store):
    return load_frozen(run.best, PreparedStore.open(user_store.path))


def _keep(store: PreparedStore) -> torch.Tensor:
    keep = torch.zeros(len(store.lat), len(store.lon), dtype=torch.bool)
    keep[::3, ::4] = True  # "stations"
    return keep


def test_embed_writes_time_feature_embeddings_with_identity(run, user_store, tmp_path):
    embed(run.path, user_store.path, tmp_path / "h.zarr")
    with xr.open_dataset(tmp_path / "h.zarr", engine="zarr") as ds:
        assert ds["embedding"].dims == ("time", "feature") and ds["embedding"].shape == (DAYS, 16)
        np.testing.assert_array_equal(ds["time"].values.astype("datetime64[D]"), user_store.times)
        assert ds.attrs["config_digest"] == run.config.digest() and ds.attrs["run"] == str(run.path.resolve())
        assert {"method", "fusion", "preset", "sparta_version", "weights_digest", "grid"} <= set(ds.attrs)
        assert ds.attrs["masking"] == "none" and ds.attrs["variables"] == ",".join(user_store.variables)
        assert list(ds["channel"].values) == user_store.channels
        model_stats = load_checkpoint(run.best)["mean"].numpy()  # the user's store has other statistics
        np.testing.assert_array_equal(ds["norm_mean"].values, model_stats)
        np.testing.assert_allclose(ds["lat"].values, user_store.lat)


@pytest.mark.parametrize("suffixes", [(".zarr", ".nc"), (".nc", ".zarr")])
def test_decode_inverts_embed_exactly_as_the_frozen_model(run, user_store, frozen, tmp_path, suffixes):
    h_path, f_path = tmp_path / f"h{suffixes[0]}", tmp_path / f"fields{suffixes[1]}"
    embed(run.path, user_store.path, h_path)
    decode(run.path, h_path, f_path)
    with xr.open_dataset(f_path, engine="zarr" if suffixes[1] == ".zarr" else "netcdf4") as ds:
        assert set(ds.data_vars) == set(user_store.channels)
        assert all(ds[c].dims == ("time", "lat", "lon") for c in user_store.channels)
        np.testing.assert_allclose(ds["lat"].values, user_store.lat)
        np.testing.assert_allclose(ds["lon"].values, user_store.lon)
        decoded = np.stack([ds[c].values for c in user_store.channels], axis=1)
    expected = frozen.decode(frozen.encode(frozen.store.normalise(np.asarray(user_store.fields)))).numpy()
    np.testing.assert_array_equal(decoded, expected)
    assert np.isfinite(decoded).all()


def _rms_z_error(fields: np.ndarray, truth: np.ndarray, std: np.ndarray) -> float:
    return float(np.sqrt((((fields - truth) / std[:, None, None]) ** 2).mean()))


def test_decoded_fields_beat_the_mean_field(micro_store, user_store, tmp_path):
    """embed + decode in physical units must beat a decoder that outputs the mean field (its error is the
    truth's own spread). The micro SPARTA run above learns nothing in its few steps, so the check uses the
    EOF/PCA model (closed form, same embed/decode path)."""
    from sparta.training import train_run

    cfg = load_config("micro", [f"data.store={micro_store.path}"], method="pca")
    run = train_run(Run.create(cfg, tmp_path / "pca"), micro_store, progress=False)
    embed(run.path, user_store.path, tmp_path / "h.nc")
    decode(run.path, tmp_path / "h.nc", tmp_path / "fields.nc")
    with xr.open_dataset(tmp_path / "fields.nc") as ds:
        decoded = np.stack([ds[c].values for c in user_store.channels], axis=1)
    truth, state = np.asarray(user_store.fields), load_checkpoint(run.best)
    mean, std = state["mean"].numpy(), state["std"].numpy()
    mean_field = np.broadcast_to(mean[None, :, None, None], truth.shape)
    ours, baseline = _rms_z_error(decoded, truth, std), _rms_z_error(mean_field, truth, std)
    assert ours < 0.7 * baseline  # measured 0.50 against 1.02 (ratio 0.49) with the micro preset's 16 EOFs
    assert not _rms_z_error(mean_field, truth, std) < 0.7 * baseline  # a mean-field decoder fails the bound


def test_fixed_mask_changes_embeddings_and_equals_augmenter_masking(run, user_store, frozen, tmp_path):
    keep = _keep(user_store)
    # latitude descending and WeatherBench-style names: reordered on load
    xr.Dataset({"stations": (("latitude", "longitude"), keep.numpy()[::-1].astype(np.int8))},
               coords={"latitude": user_store.lat[::-1], "longitude": user_store.lon}).to_netcdf(tmp_path / "m.nc")
    assert torch.equal(load_observation_mask(tmp_path / "m.nc", user_store), keep)
    masked = embed(run.path, user_store.path, tmp_path / "masked.nc", mask=tmp_path / "m.nc")
    clean = embed(run.path, user_store.path, tmp_path / "clean.nc")
    assert masked.attrs["masking"] == "fixed" and masked["observation_mask"].values.sum() == int(keep.sum())
    assert not np.allclose(masked["embedding"].values, clean["embedding"].values)
    x = torch.from_numpy(frozen.store.normalise(np.asarray(user_store.fields)))
    with torch.no_grad():
        direct = frozen.model.encode(*frozen.augmenter.mask(x, generator(0), 0.0, 0.0, keep=keep))
    np.testing.assert_array_equal(masked["embedding"].values, direct.numpy())

    np.save(tmp_path / "m.npy", keep.numpy())
    from_npy = embed(run.path, user_store.path, tmp_path / "npy.nc", mask=tmp_path / "m.npy")
    np.testing.assert_array_equal(from_npy["embedding"].values, masked["embedding"].values)


def test_random_mask_ratio_is_seeded_and_recorded(run, user_store, tmp_path):
    a = embed(run.path, user_store.path, tmp_path / "a.nc", mask_ratio=0.7, seed=3)
    b = embed(run.path, user_store.path, tmp_path / "b.nc", mask_ratio=0.7, seed=3)
    np.testing.assert_array_equal(a["embedding"].values, b["embedding"].values)
    assert (a.attrs["masking"], a.attrs["mask_ratio"], a.attrs["mask_seed"]) == ("ratio", 0.7, 3)
    with pytest.raises(DataError, match="mutually exclusive"):
        embed(run.path, user_store.path, tmp_path / "c.nc", mask=tmp_path / "m.npy", mask_ratio=0.5)
    with pytest.raises(DataError, match=r"in \[0, 1\)"):
        embed(run.path, user_store.path, tmp_path / "c.nc", mask_ratio=1.5)


@pytest.mark.parametrize("case, match", [
    ("shape", r"shape \(16, 64\), expected \(n_lat, n_lon\) = \(32, 64\)"),
    ("values", "non-boolean values"),
    ("empty", "observes no grid point"),
    ("coords", "lon coordinates do not match"),
    ("two", "exactly one variable"),
])
def test_mask_file_validation(user_store, tmp_path, case, match):
    keep = _keep(user_store).numpy()
    lat, lon = user_store.lat, user_store.lon
    if case == "shape":
        path = tmp_path / "m.npy"
        np.save(path, keep[:16])
    elif case == "values":
        path = tmp_path / "m.npy"
        np.save(path, np.where(keep, 0.5, 0.0))
    elif case == "empty":
        path = tmp_path / "m.npy"
        np.save(path, np.zeros_like(keep))
    else:
        path = tmp_path / "m.nc"
        data = {"mask": (("lat", "lon"), keep.astype(np.int8))}
        if case == "two":
            data["other"] = data["mask"]
        xr.Dataset(data, coords={"lat": lat, "lon": lon + (2.0 if case == "coords" else 0.0)}).to_netcdf(path)
    with pytest.raises(DataError, match=match):
        load_observation_mask(path, user_store)


def test_outputs_are_not_overwritten_and_suffixes_checked(run, user_store, tmp_path):
    embed(run.path, user_store.path, tmp_path / "h.nc")
    with pytest.raises(DataError, match="already exists.*--overwrite"):
        embed(run.path, user_store.path, tmp_path / "h.nc")
    embed(run.path, user_store.path, tmp_path / "h.nc", mask_ratio=0.5, overwrite=True)
    assert xr.open_dataset(tmp_path / "h.nc").attrs["masking"] == "ratio"
    with pytest.raises(DataError, match=r"must end in \.zarr or \.nc"):
        embed(run.path, user_store.path, tmp_path / "h.csv")


def test_store_of_other_variables_is_refused(run, tiny_store, tmp_path):
    with pytest.raises(DataError, match="has variables .* the model expects"):
        embed(run.path, tiny_store.path, tmp_path / "h.nc")


def test_decode_refuses_embeddings_of_another_model(run, user_store, tmp_path):
    embed(run.path, user_store.path, tmp_path / "h.nc")
    state = load_checkpoint(run.best)
    other = Run.open(shutil.copytree(run.path, tmp_path / "other"))
    save_checkpoint(other.best, {**state, "model": {k: v + 1e-3 if v.is_floating_point() else v
                                                    for k, v in state["model"].items()}})
    with pytest.raises(DataError, match="other weights"):
        decode(other.path, tmp_path / "h.nc", tmp_path / "f.nc")
    config = {**state["config"], "train": {**state["config"]["train"], "seed": 99}}
    save_checkpoint(other.best, {**state, "config": config, "config_digest": validate(config).digest()})
    with pytest.raises(DataError, match="another model/config"):
        decode(other.path, tmp_path / "h.nc", tmp_path / "f.nc")
    with xr.open_dataset(tmp_path / "h.nc") as ds:
        ds.isel(feature=slice(0, 8)).to_netcdf(tmp_path / "short.nc")
    with pytest.raises(DataError, match="8-dim embeddings.* expects 16"):
        decode(run.path, tmp_path / "short.nc", tmp_path / "f.nc")


def test_cli_embed_then_decode(run, user_store, tmp_path):
    runner = CliRunner()
    h, f = tmp_path / "h.zarr", tmp_path / "f.nc"
    result = runner.invoke(app, ["embed", "--run", str(run.path), "--data", str(user_store.path),
                                 "--out", str(h), "--mask-ratio", "0.5", "--seed", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["decode", "--run", str(run.path), "--embeddings", str(h), "--out", str(f)])
    assert result.exit_code == 0, result.output
    assert xr.open_dataset(f)["t2m"].shape == (DAYS, 32, 64)
    result = runner.invoke(app, ["decode", "--run", str(run.path), "--embeddings", str(h), "--out", str(f)])
    assert result.exit_code == 2


def test_zarr_with_pickled_arrays_is_refused(run, user_store, tmp_path):
    embed(run.path, user_store.path, tmp_path / "h.zarr")
    meta = tmp_path / "h.zarr" / "embedding" / ".zarray"
    meta.write_text(meta.read_text().replace('"filters": null', '"filters": [{"id": "pickle", "protocol": 5}]'))
    assert '"pickle"' in meta.read_text()
    with pytest.raises(DataError, match="pickle codec"):
        decode(run.path, tmp_path / "h.zarr", tmp_path / "f.nc")
