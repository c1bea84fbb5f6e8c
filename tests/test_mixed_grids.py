"""Variables on different grids: a late-fusion model with t2m at 128x64 and the 850 hPa fields at 64x32."""

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from sparta import metrics
from sparta.augment import MultiGridAugmenter, build_augmenter
from sparta.cli import app
from sparta.config import ConfigError, load_config
from sparta.data import open_or_prepare, prepare_from_config
from sparta.data.store import DataError, MixedStore, PreparedStore, open_store
from sparta.grids import Grid
from sparta.losses import per_channel_mse, reconstruction_loss
from sparta.models import SpartaModel
from sparta.seeding import generator

MIXED = ["data.variable_grids={2m_temperature: 128x64}", "model.fusion=attention"]
FINE, COARSE = Grid(("t2m",), 64, 128), Grid(("z850", "u850", "v850", "q850"), 32, 64)


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory) -> MixedStore:
    cfg = load_config("micro", [*MIXED, "data.years=3"])
    return prepare_from_config(cfg.data, tmp_path_factory.mktemp("mixed") / "store", progress=False)


def test_early_fusion_refuses_variables_on_several_grids():
    with pytest.raises(ConfigError, match="model.fusion=early.*late fusion.*data.regrid"):
        load_config("micro", ["data.variable_grids={2m_temperature: 128x64}"])
    with pytest.raises(ConfigError, match="names \\['t2m'\\], which data.variables does not list"):
        load_config("micro", ["data.variable_grids={t2m: 128x64}", "model.fusion=gnn"])


def test_the_config_digest_follows_the_grids_but_not_the_hardware_settings():
    base = load_config("micro", ["model.fusion=attention"])
    assert load_config("micro", MIXED).digest() != base.digest()
    fast = load_config("micro", ["model.fusion=attention", "train.precision=bf16", "train.channels_last=true",
                                 "train.compile=true", "train.device=cpu"])
    assert fast.digest() == base.digest()


def test_mixed_store_keeps_each_variable_on_its_grid(mixed_store):
    store = open_store(mixed_store.path)
    assert isinstance(store, MixedStore) and store.layout == [FINE, COARSE]
    assert store.grid == "128x64[t2m]+64x32[z850,u850,v850,q850]"
    assert store.channels == ["t2m", "z850", "u850", "v850", "q850"] and len(store.mean) == 5
    fine, coarse = store.read(slice(0, 3))
    assert fine.shape == (3, 1, 64, 128) and coarse.shape == (3, 4, 32, 64)
    cfg = load_config("micro", ["data.years=3"])
    with pytest.raises(DataError, match="several grids; open it with open_store"):
        PreparedStore.open(store.path)
    with pytest.raises(DataError, match="128x64\\[t2m\\]"):
        open_or_prepare(cfg.data.model_copy(update={"store": str(store.path)}), progress=False)


def test_late_fusion_encodes_each_grid_and_decodes_every_variable_to_its_grid():
    cfg = load_config("micro", MIXED)
    for fusion in ("attention", "gnn"):
        model = SpartaModel(cfg.model.model_copy(update={"fusion": fusion}), [FINE, COARSE]).eval()
        x = [torch.randn(2, 1, 64, 128), torch.randn(2, 4, 32, 64)]
        h = model.encode(x)
        assert h.shape == (2, cfg.model.embed_dim)
        out = model.decode(h)
        assert [tuple(o.shape) for o in out] == [(2, 1, 64, 128), (2, 4, 32, 64)]
        # each variable's encoder sees only its own field: changing t2m moves only t2m's token
        tokens = model.fusion.variable_embeddings(x)
        x2 = [x[0] + 1.0, x[1]]
        moved = (model.fusion.variable_embeddings(x2) - tokens).abs().amax(dim=(0, 2))
        assert moved[0] > 0 and torch.all(moved[1:] == 0)


def test_early_fusion_model_refuses_a_list_of_grids():
    cfg = load_config("micro")
    with pytest.raises(ValueError, match="late fusion"):
        SpartaModel(cfg.model, [COARSE]).encode([torch.randn(2, 4, 32, 64)])


def test_losses_and_metrics_score_every_channel_on_its_own_grid():
    gen = torch.Generator().manual_seed(0)
    pred = [torch.randn(3, 1, 8, 16, generator=gen), torch.randn(3, 2, 4, 8, generator=gen)]
    true = [torch.randn(3, 1, 8, 16, generator=gen) + 5, torch.randn(3, 2, 4, 8, generator=gen) + 5]
    expected = per_channel_mse(pred[0], true[0]).sum() + per_channel_mse(pred[1], true[1]).sum()
    torch.testing.assert_close(reconstruction_loss(pred, true), expected)
    err = sum(((p - t) ** 2).double().sum() for p, t in zip(pred, true))
    ref = sum((t ** 2).double().sum() for t in true)
    torch.testing.assert_close(metrics.rrmse(pred, true), (err / ref).sqrt() * 100)
    per_channel = metrics.rrmse(pred, true, per_channel=True)
    torch.testing.assert_close(per_channel[1:], metrics.rrmse(pred[1], true[1], per_channel=True))
    ssim = torch.cat([metrics.ssim(p, t, kernel_size=3, per_channel=True) for p, t in zip(pred, true)])
    torch.testing.assert_close(metrics.ssim(pred, true, kernel_size=3), ssim.mean())
    torch.testing.assert_close(metrics.psnr(pred, true, per_channel=True)[1:], metrics.psnr(pred[1], true[1], True))


def test_augmenter_builds_views_per_grid_at_each_grids_encoder_size():
    cfg = load_config("micro", MIXED)
    aug = build_augmenter(cfg.augment, [FINE, COARSE])
    assert isinstance(aug, MultiGridAugmenter)
    x = [torch.randn(2, 1, 64, 128), torch.randn(2, 4, 32, 64)]
    views, keeps, targets = aug.view(x, generator(0), masked=True, with_target=True)
    assert [tuple(v.shape) for v in views] == [(2, 1, 144, 288), (2, 4, 72, 144)]  # 2.25x each grid
    assert [tuple(k.shape) for k in keeps] == [(2, 1, 144, 288), (2, 1, 72, 144)]  # one mask per grid point
    assert [tuple(t.shape) for t in targets] == [(2, 1, 64, 128), (2, 4, 32, 64)]
    with pytest.raises(DataError, match="several; use a random mask ratio"):
        aug.mask(x, generator(0), 0.5, 0.5, keep=torch.ones(32, 64, dtype=torch.bool))


def test_mixed_grid_run_trains_evaluates_embeds_and_decodes(mixed_store, tmp_path):
    runner = CliRunner()
    run_dir = tmp_path / "run"
    overrides = [*MIXED, "data.years=3", f"data.store={mixed_store.path}", "train.steps_per_epoch=1"]
    result = runner.invoke(app, ["train", "--preset", "micro", "--out", str(run_dir), "--no-progress", *overrides])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    figures = {p.name for p in (run_dir / "figures").iterdir()}
    assert {"diffusion_reconstruction_128x64.png", "diffusion_reconstruction_64x32.png"} <= figures

    result = runner.invoke(app, ["embed", "--run", str(run_dir), "--data", str(mixed_store.path),
                                 "--out", str(tmp_path / "h.nc"), "--mask-ratio", "0.5"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["decode", "--run", str(run_dir), "--embeddings", str(tmp_path / "h.nc"),
                                 "--out", str(tmp_path / "fields.nc")])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(tmp_path / "fields.nc") as ds:
        assert ds["t2m"].dims == ("time", "lat_128x64", "lon_128x64") and ds["t2m"].shape[1:] == (64, 128)
        assert ds["q850"].dims == ("time", "lat_64x32", "lon_64x32") and ds["q850"].shape[1:] == (32, 64)
        np.testing.assert_allclose(ds["lat_128x64"].values, mixed_store.parts[0].lat)
        assert ds.sizes["time"] == len(mixed_store.times)
        assert np.isfinite(ds["t2m"].values).all()
