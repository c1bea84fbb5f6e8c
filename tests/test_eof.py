"""The EOF/PCA baseline (method=pca): the fit's known values, masked least squares, and the CLI end to end."""

import csv
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from sparta.augment import random_keep_mask
from sparta.checkpoint import load_checkpoint
from sparta.cli import app
from sparta.grids import Grid
from sparta.models import lstsq
from sparta.models.eof import EOFModel, area_weights, fit_eof
from sparta.runs import Run
from sparta.models.build import load_trained

LAYOUT = [Grid(("a", "b"), 6, 8)]
LAT = np.linspace(-75.0, 75.0, 6)
F = 2 * 6 * 8


def _low_rank(n: int, rank: int, seed: int = 0) -> torch.Tensor:
    """``n`` samples of (2, 6, 8) fields spanned by ``rank`` random patterns around a non-zero mean."""
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(rank, F, generator=gen, dtype=torch.float64)
    amplitudes = torch.randn(n, rank, generator=gen, dtype=torch.float64) * torch.linspace(4, 1, rank)
    return (amplitudes @ patterns + 0.5).reshape(n, 2, 6, 8).float()


def _weighted_anomalies(x: torch.Tensor, lat=LAT) -> torch.Tensor:
    w = area_weights(LAYOUT, [lat])
    flat = x.reshape(len(x), -1).double()
    return (flat - flat.mean(0)) * w


def test_area_weights_are_sqrt_cos_lat_with_mean_square_one():
    w = area_weights(LAYOUT, [LAT]).reshape(2, 6, 8)
    cos = np.cos(np.deg2rad(LAT))
    np.testing.assert_allclose(w[0, :, 0].numpy() ** 2, cos / cos.mean(), rtol=1e-12)
    assert torch.equal(w[0], w[1]) and bool((w == w[:, :, :1]).all())  # same for every channel and longitude


@pytest.mark.parametrize("n", [30, 150], ids=["gram (N < F)", "covariance (N > F)"])
def test_eofs_are_orthonormal_and_explain_the_svd_variances_in_order(n):
    x = _low_rank(n, F)  # full rank: min(N - 1, F) non-zero EOFs
    model = fit_eof(x.numpy(), LAYOUT, 12, [LAT])
    e = model.components.double()
    torch.testing.assert_close(e @ e.T, torch.eye(12, dtype=torch.float64), atol=1e-6, rtol=0)
    var = model.explained_variance
    assert bool((var[:-1] >= var[1:]).all()) and float(var[-1]) > 0
    singular = torch.linalg.svdvals(_weighted_anomalies(x))  # known values: s^2 / (N - 1)
    torch.testing.assert_close(var.double(), singular[:12] ** 2 / (n - 1), rtol=1e-5, atol=0)
    torch.testing.assert_close(model.total_variance.double(), (singular**2).sum() / (n - 1), rtol=1e-5, atol=0)
    torch.testing.assert_close(model.coefficients(x).var(0).double(), var.double(), rtol=1e-3, atol=0)
    torch.testing.assert_close(model.encode(x).var(0), torch.ones(12), rtol=1e-3, atol=0)  # standardised PCs


def test_all_components_reconstruct_exactly_and_surplus_eofs_are_zero():
    x = _low_rank(40, 5)
    model = fit_eof(x.numpy(), LAYOUT, 8, [LAT])  # embed_dim 8 >= rank 5
    torch.testing.assert_close(model.decode(model.encode(x)), x, atol=1e-4, rtol=0)
    assert float(model.explained_variance[:5].sum() / model.total_variance) == pytest.approx(1.0, abs=1e-6)
    assert not model.components[5:].any() and not model.explained_variance[5:].any()
    assert not model.encode(x)[:, 5:].any()


def test_fit_is_deterministic_with_a_fixed_sign_convention():
    x = _low_rank(60, 20, seed=3).numpy()
    first, second = fit_eof(x, LAYOUT, 10, [LAT]), fit_eof(x.copy(), LAYOUT, 10, [LAT])
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    e = first.components
    peaks = e.gather(1, e.abs().argmax(1, keepdim=True))
    assert bool((peaks > 0).all())  # each EOF's largest-magnitude value is positive


def test_masked_projection_is_the_plain_projection_when_nothing_is_hidden():
    x = _low_rank(50, F, seed=1)
    model = fit_eof(x[:40].numpy(), LAYOUT, 10, [LAT])
    plain = model.encode(x)
    every_point = torch.ones(6, 8, dtype=torch.bool)
    assert torch.equal(model.encode(x, keep=every_point), plain)
    assert torch.equal(model.encode(x, keep=every_point.expand(50, 1, 6, 8)), plain)
    # a batch mixing complete and partly observed samples: the complete ones still get the projection exactly
    keep = random_keep_mask(50, 6, 8, 0.0, 0.5, torch.Generator().manual_seed(0))
    keep[::2] = True
    mixed = model.encode(x, keep=keep)
    assert torch.equal(mixed[::2], plain[::2]) and not torch.equal(mixed[1::2], plain[1::2])


@pytest.mark.parametrize("per_channel", [False, True])
def test_masked_projection_recovers_the_coefficients_of_a_field_in_the_eof_span(per_channel, monkeypatch):
    """Least squares on the observed points recovers an in-span field exactly (ridge ~0); the default ridge
    biases it by what it costs to shrink the hidden points' anomaly."""
    model = fit_eof(_low_rank(80, F, seed=2).numpy(), LAYOUT, 10, [LAT])
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(25, 10, generator=gen)
    x = model.decode(h)  # lies in the span of the 10 EOFs
    keep = random_keep_mask(25, 6, 8, 0.7, 0.7, gen, channels=2 if per_channel else 1)
    assert abs(float(keep.float().mean()) - 0.3) < 0.01
    hidden = x.masked_fill(~keep, float("nan"))  # hidden values are never read
    # ~14 observed points for 10 EOFs: the default ridge's bias was 9.4% (one mask for both channels) and 8.9%
    # (a mask per channel) of the largest coefficient
    assert (model.encode(hidden, keep=keep) - h).abs().max() < 0.12 * h.abs().max()
    monkeypatch.setattr(lstsq, "RIDGE", 1e-9)
    torch.testing.assert_close(model.encode(hidden, keep=keep), h, atol=1e-4 * float(h.abs().max()), rtol=0)
    station = torch.zeros(6, 8, dtype=torch.bool)  # one fixed mask for the whole batch: 12 of 48 points
    station[::2, ::2] = station[1::2, 1::2] = True
    station[:, 4:] = False
    torch.testing.assert_close(model.encode(x.masked_fill(~station, 0.0), keep=station), h,
                               atol=1e-4 * float(h.abs().max()), rtol=0)


def test_masked_solve_after_the_thread_count_went_down_and_up():
    """With torch 2.13's MKL a batched LU solve of 256 x 256 systems hung (and printed 'Parameter 6 was
    incorrect on entry to SLASWP') once the thread count had been set to 1 and back, as fit_eof's eigh does on
    short records; the masked solve (matrix products only) finishes. Run in a child process so a hang fails instead of blocking."""
    script = textwrap.dedent("""
        import torch
        from sparta.augment import random_keep_mask
        from sparta.grids import Grid
        from sparta.models.eof import EOFModel
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        torch.set_num_threads(max(2, threads))
        model = EOFModel(256, [Grid(("a", "b"), 32, 64)])
        model.components = torch.linalg.qr(torch.randn(2 * 32 * 64, 256, generator=torch.Generator().manual_seed(0)))[0].T
        x = torch.randn(16, 2, 32, 64, generator=torch.Generator().manual_seed(1))
        keep = random_keep_mask(16, 32, 64, 0.7, 0.7, torch.Generator().manual_seed(2), channels=1)
        c = model.coefficients(x, keep)
        y = model.flatten(x)[:, :, None] * model._flat_keep(keep, 16)[:, :, None]
        e = model.components.double()
        g = (e[None] * model._flat_keep(keep, 16)[:, None, :]) @ e.T
        systems, rhs = g + 0.01 * (torch.eye(256) - g), e @ y.double()
        exact = torch.stack([torch.linalg.solve(a, b)[:, 0] for a, b in zip(systems, rhs)])  # one at a time
        print(float((c - exact).abs().max() / exact.abs().max()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) < 1e-5


def test_variables_on_several_grids_are_flattened_together():
    layout = [Grid(("t2m",), 8, 16), Grid(("z850", "u850"), 4, 8)]
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(6, 16 * 8 + 2 * 4 * 8, generator=gen)
    x = [(torch.randn(30, 6, generator=gen) @ base)[:, :128].reshape(30, 1, 8, 16),
         (torch.randn(30, 6, generator=gen) @ base)[:, 128:].reshape(30, 2, 4, 8)]
    model = fit_eof(x, layout, 12, [np.linspace(-80, 80, 8), np.linspace(-70, 70, 4)])
    out = model.decode(model.encode(x))
    assert isinstance(out, list) and [tuple(p.shape) for p in out] == [(30, 1, 8, 16), (30, 2, 4, 8)]
    for rec, true in zip(out, x):
        torch.testing.assert_close(rec, true, atol=1e-4, rtol=0)


def test_too_many_eofs_or_another_grid_are_clear_errors():
    with pytest.raises(ValueError, match=r"model.embed_dim=97 EOFs exceed the 96 values"):
        fit_eof(_low_rank(20, 4).numpy(), LAYOUT, 97, [LAT])
    with pytest.raises(ValueError, match="native grid only"):
        EOFModel(4, LAYOUT).encode(torch.zeros(2, 2, 12, 16))


# ---------------------------------------------------------------- end to end through the CLI, micro preset
def _cli(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


def _climatology_rrmse(store, days: slice) -> float:
    """RRMSE (%) of the monthly train-split means as a reconstruction of ``days`` (physical units)."""
    a, b = store.split_range("train")
    months = store.times.astype("datetime64[M]").astype(int) % 12
    clim = np.stack([np.asarray(store.fields[a:b])[months[a:b] == m].mean(0) for m in range(12)])
    truth = np.asarray(store.fields[days], dtype=np.float64)
    return 100 * math.sqrt(((clim[months[days]] - truth) ** 2).sum() / (truth**2).sum())


def test_pca_runs_through_train_evaluate_embed_and_decode(tmp_path, micro_store):
    run_dir = tmp_path / "pca"
    _cli("train", "--model", "pca", "--preset", "micro", "--out", str(run_dir), "--no-progress",
         f"data.store={micro_store.path}")
    run = Run.open(run_dir)
    assert run.is_complete and run.config.method == "pca" and (run.figures / "eof_spectrum.png").is_file()
    (row,) = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert row["stage"] == "eof" and 0 < float(row["explained_variance"]) < 1
    assert 0 < float(row["train_rrmse"]) < float(row["val_rrmse"]) < 100
    meta = load_checkpoint(run.best, expect_digest=run.config.digest())
    assert meta["variables"] == micro_store.variables and meta["grid"] == "64x32"
    model, cfg, _ = load_trained(run.last)
    assert isinstance(model, EOFModel) and model.embed_dim == cfg.model.embed_dim == 16

    _cli("evaluate", str(run_dir), "--tasks", "classify", "--no-progress")
    assert "| EOF/PCA (linear) |" in (run.evaluation / "tables.md").read_text()

    _cli("embed", "--run", str(run_dir), "--data", str(micro_store.path), "--out", str(tmp_path / "h.nc"))
    _cli("embed", "--run", str(run_dir), "--data", str(micro_store.path), "--out", str(tmp_path / "h70.nc"),
         "--mask-ratio", "0.7")
    test = slice(*micro_store.split_range("test"))
    truth = np.asarray(micro_store.fields[test], dtype=np.float64)
    scores = {}
    for name in ("h", "h70"):
        _cli("decode", "--run", str(run_dir), "--embeddings", str(tmp_path / f"{name}.nc"),
             "--out", str(tmp_path / f"{name}-fields.nc"))
        with xr.open_dataset(tmp_path / f"{name}-fields.nc") as ds:
            decoded = np.stack([ds[c].values for c in micro_store.channels], axis=1)[test]
        scores[name] = 100 * math.sqrt(((decoded - truth) ** 2).sum() / (truth**2).sum())
    with xr.open_dataset(tmp_path / "h.nc") as complete, xr.open_dataset(tmp_path / "h70.nc") as masked:
        assert complete.attrs["method"] == "pca" and masked.attrs["masking"] == "ratio"
        assert complete["embedding"].attrs["long_name"] == "standardised EOF coefficients"
        assert "least-squares" in complete.attrs["normalisation"]
        assert not np.array_equal(complete["embedding"].values, masked["embedding"].values)
    climatology = _climatology_rrmse(micro_store, test)
    assert scores["h"] < scores["h70"] < climatology, (scores, climatology)
