"""Known-value tests of sparta.metrics against hand-computed numbers and NumPy loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from sparta.metrics import (
    FIELD_METRICS,
    acc,
    anomaly_correlation,
    area_mean,
    area_mse,
    crps,
    display_unit,
    eddy_correlation,
    cycle_distances,
    embedding_std,
    lat_weights,
    latent_density,
    mean_std,
    psnr,
    psnr_paper,
    realism_score,
    spread_skill,
    rmse,
    rrmse,
    rrmse_paper,
    ssim,
    ssim_paper,
    ssim_sigma,
    step_distances,
)


def fields(seed: int, shape: tuple[int, ...] = (3, 2, 8, 16)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------- RRMSE and latitude weights


def test_rrmse_ten_percent() -> None:
    true = fields(0) + 5.0
    assert rrmse(1.1 * true, true).item() == pytest.approx(10.0)
    assert rrmse(1.1 * true, true, per_channel=True).tolist() == pytest.approx([10.0, 10.0])


def test_rrmse_pooled_and_per_channel_hand_values() -> None:
    true = torch.ones(2, 2, 3, 4)
    true[:, 1] = 2.0
    pred = true.clone()
    pred[:, 0] = 1.1  # channel 0: error 0.1 on |true| = 1 -> 10 %; channel 1 exact
    assert rrmse(pred, true, per_channel=True).tolist() == pytest.approx([10.0, 0.0])
    # pooled: sqrt(n * 0.01) / sqrt(n * 1 + n * 4) = 0.1 / sqrt(5)
    assert rrmse(pred, true).item() == pytest.approx(100 * 0.1 / math.sqrt(5))


def test_rrmse_matches_loop_reference_and_zero_mean_fields() -> None:
    true, pred = fields(1), fields(2)  # zero-mean, like u/v winds
    t, p = true.numpy(), pred.numpy()
    num = sum(float((p[idx] - t[idx]) ** 2) for idx in np.ndindex(t.shape))
    den = sum(float(t[idx] ** 2) for idx in np.ndindex(t.shape))
    assert rrmse(pred, true).item() == pytest.approx(100 * math.sqrt(num / den), rel=1e-12)
    assert torch.isfinite(rrmse(pred, true, per_channel=True)).all()


def test_rrmse_weighted_matches_loop_reference() -> None:
    true, pred = fields(3), fields(4)
    lat = torch.linspace(-78.75, 78.75, 8)
    w = lat_weights(lat)
    t, p, wn = true.numpy(), pred.numpy(), w.numpy()
    num = sum(wn[idx[2]] * float((p[idx] - t[idx]) ** 2) for idx in np.ndindex(t.shape))
    den = sum(wn[idx[2]] * float(t[idx] ** 2) for idx in np.ndindex(t.shape))
    assert rrmse(pred, true, weights=w).item() == pytest.approx(100 * math.sqrt(num / den), rel=1e-12)
    grid_w = w[:, None].expand(8, 16)
    assert rrmse(pred, true, weights=grid_w).item() == pytest.approx(rrmse(pred, true, weights=w).item())
    uniform = torch.full((8,), 3.0)
    assert rrmse(pred, true, weights=uniform).item() == pytest.approx(rrmse(pred, true).item())
    with pytest.raises(ValueError, match="weights"):
        rrmse(pred, true, weights=torch.ones(16))


def test_lat_weights_even_grid_proportional_to_cos() -> None:
    lat = torch.linspace(-87.1875, 87.1875, 32)  # the 64x32 grid
    w = lat_weights(lat)
    assert w.mean().item() == pytest.approx(1.0)
    cos = torch.cos(torch.deg2rad(lat.double()))
    assert torch.allclose(w, cos / cos.mean(), rtol=1e-5)
    assert torch.allclose(lat_weights(lat.flip(0)), w.flip(0))


def test_lat_weights_grid_with_poles_closed_form() -> None:
    lat = torch.linspace(-90.0, 90.0, 7)  # odd: both poles, spacing 30 deg
    half = math.radians(15.0)
    # cell areas (per unit longitude): interior sin(phi + d/2) - sin(phi - d/2) = 2 cos(phi) sin(d/2),
    # pole half-cells 1 - cos(d/2); they sum to the integral of cos over [-90, 90] = 2.
    area = [1 - math.cos(half)] + [2 * math.cos(math.radians(p)) * math.sin(half) for p in (-60, -30, 0, 30, 60)]
    area += [1 - math.cos(half)]
    assert sum(area) == pytest.approx(2.0)
    expected = torch.tensor(area, dtype=torch.float64) / (2.0 / 7)
    assert torch.allclose(lat_weights(lat), expected)
    assert lat_weights(lat)[0].item() > 0.0


# ---------------------------------------------------------------- SSIM and PSNR


def test_ssim_identical_is_one() -> None:
    true = fields(5, (2, 3, 32, 64))
    assert ssim(true, true).item() == pytest.approx(1.0)
    assert ssim(true, true, per_channel=True).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_ssim_data_range_from_true_per_channel() -> None:
    true = fields(6, (2, 2, 32, 64))
    pred = true + 0.3 * fields(7, (2, 2, 32, 64))
    base = ssim(pred, true, per_channel=True)
    scale = torch.tensor([1.0, 1000.0]).view(1, 2, 1, 1)
    scaled = ssim(pred * scale, true * scale, per_channel=True)
    # SSIM runs in float32 (10x faster than float64): scale invariance holds to float32 rounding
    assert torch.allclose(scaled, base, rtol=1e-5)
    assert ssim(pred * scale, true * scale).item() == pytest.approx(base.mean().item(), rel=1e-5)
    # the data range comes from the true field, not from the prediction
    c0 = structural_similarity_index_measure(
        2 * pred[:, :1],
        true[:, :1],
        sigma=ssim_sigma(7),
        data_range=(true[:, 0].max() - true[:, 0].min()).item(),
    )
    assert ssim(2 * pred, true, per_channel=True)[0].item() == pytest.approx(c0.item(), rel=1e-6)


def test_ssim_kernel_size_sets_the_window() -> None:
    assert ssim_sigma(11) == 1.5  # torchmetrics' default window
    true = fields(8, (2, 1, 32, 64))
    pred = true + 0.5 * fields(9, (2, 1, 32, 64))
    assert ssim(pred, true, kernel_size=7).item() != pytest.approx(ssim(pred, true, kernel_size=11).item())
    for bad in (6, 45):
        with pytest.raises(ValueError, match="kernel_size"):
            ssim(pred, true, kernel_size=bad)


def test_psnr_known_mse_and_range() -> None:
    true = torch.zeros(2, 2, 4, 4)
    true[0, 0, 0, 0] = 2.0  # channel 0 range 2
    true[0, 1, 0, 0] = 10.0  # channel 1 range 10
    pred = true + 0.1  # MSE 0.01 in both channels
    expected = [10 * math.log10(4 / 0.01), 10 * math.log10(100 / 0.01)]
    assert psnr(pred, true, per_channel=True).tolist() == pytest.approx(expected)
    assert psnr(pred, true).item() == pytest.approx(sum(expected) / 2)
    # invariant to a per-channel affine change of units (range from the same true field)
    assert psnr(3 * pred + 7, 3 * true + 7).item() == pytest.approx(psnr(pred, true).item())


# ---------------------------------------------------------------- latent density and realism


def test_latent_density_hand_values() -> None:
    point = torch.tensor([[1.0, -2.0, 3.0]])
    assert latent_density(point, point).item() == pytest.approx(1.0)
    gen = torch.zeros(1, 2)
    ref = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert latent_density(gen, ref, sigma=5.0).item() == pytest.approx((1 + math.exp(-25 / 50)) / 2)


def test_latent_density_matches_loop_reference() -> None:
    gen, ref = fields(10, (4, 6)) * 10, fields(11, (7, 6)) * 10
    g, r = gen.numpy(), ref.numpy()
    expected = np.mean([np.mean([math.exp(-np.sum((gi - rj) ** 2) / (2 * 20.0**2)) for rj in r]) for gi in g])
    assert latent_density(gen, ref).item() == pytest.approx(expected, rel=1e-12)


def test_realism_hand_values() -> None:
    ref = torch.tensor([[0.0], [1.0], [3.0]])
    gen = torch.tensor([[2.0], [-1.0]])
    # k = 1: radii (1, 1, 2); g = 2: max(1/2, 1/1, 2/1) = 2; g = -1: max(1/1, 1/2, 2/4) = 1
    assert realism_score(gen, ref, k=1).item() == pytest.approx(1.5)
    # k = 2: radii (3, 2, 3); g = 2: max(3/2, 2/1, 3/1) = 3; g = -1: max(3/1, 2/2, 3/4) = 3
    assert realism_score(gen, ref, k=2).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="more than k"):
        realism_score(gen, ref, k=3)


def test_realism_generated_point_on_reference_point_is_finite() -> None:
    ref = torch.tensor([[0.0], [1.0], [3.0]])
    score = realism_score(torch.tensor([[1.0]]), ref, k=1, eps=1e-6)
    assert score.item() == pytest.approx(1.0 / 1e-6)


def test_realism_matches_loop_reference() -> None:
    gen, ref = fields(12, (3, 5)), fields(13, (9, 5))
    g, r, k = gen.numpy(), ref.numpy(), 5
    radii = [sorted(np.linalg.norm(r[j] - r[i]) for i in range(len(r)) if i != j)[k - 1] for j in range(len(r))]
    expected = np.mean([max(radii[j] / np.linalg.norm(gi - r[j]) for j in range(len(r))) for gi in g])
    assert realism_score(gen, ref, k=k).item() == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------- smoothness and collapse


def test_step_and_cycle_distances_hand_sequence() -> None:
    h = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0], [4.0, 2.0]])
    assert step_distances(h).tolist() == [1.0, 4.0, 9.0]
    # (0, 0) - 2 (1, 0) + (1, 2) = (-1, 2) -> 5; (1, 0) - 2 (1, 2) + (4, 2) = (3, -2) -> 13
    assert cycle_distances(h).tolist() == [5.0, 13.0]
    mean_sq_norm = (0 + 1 + 5 + 20) / 4
    assert step_distances(h, normalise=True).tolist() == pytest.approx([d / mean_sq_norm for d in (1, 4, 9)])
    assert cycle_distances(h, normalise=True).tolist() == pytest.approx([5 / mean_sq_norm, 13 / mean_sq_norm])
    assert torch.allclose(step_distances(10 * h, normalise=True), step_distances(h, normalise=True))


def test_mean_std() -> None:
    mean, std = mean_std(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert mean == pytest.approx(2.5)
    assert std == pytest.approx(math.sqrt(1.25))


def test_embedding_std_healthy_and_collapsed() -> None:
    g = torch.Generator().manual_seed(14)
    d = 64
    healthy = torch.randn(4000, d, generator=g)
    assert embedding_std(healthy) == pytest.approx(1 / math.sqrt(d), rel=0.03)
    assert embedding_std(5 * healthy) == pytest.approx(embedding_std(healthy))
    collapsed = torch.randn(1, d, generator=g) + 1e-4 * torch.randn(4000, d, generator=g)
    assert embedding_std(collapsed) < 1e-3


def test_eddy_correlation_known_values():
    lon = torch.linspace(0, 2 * math.pi, 65)[:-1]
    wave = torch.sin(3 * lon).expand(1, 1, 4, 64).clone()
    band = torch.arange(4.0)[:, None].expand(1, 1, 4, 64).clone()  # zonal-mean band only
    truth = wave + band
    assert eddy_correlation(truth, truth).item() == pytest.approx(1.0)
    assert eddy_correlation(-wave + 5 * band, truth).item() == pytest.approx(-1.0)
    assert eddy_correlation(band, truth).item() == 0.0  # no eddies predicted: 0, not NaN
    shifted = torch.sin(3 * lon + math.pi / 2).expand(1, 1, 4, 64)  # a quarter wavelength off
    assert eddy_correlation(shifted, truth).item() == pytest.approx(0.0, abs=1e-6)
    two = torch.cat([truth, truth], dim=1)
    assert eddy_correlation([two[:, :1], two[:, 1:]], [truth, truth]).tolist() == pytest.approx([1, 1])


# ---------------------------------------------------------------- the authors' formulas (paper tables)


def test_rrmse_paper_hand_values_and_ratio_to_ours() -> None:
    true = torch.ones(2, 2, 3, 4)
    true[:, 1] = 3.0  # mean 2, rms sqrt(5)
    pred = true + 0.2  # RMSE 0.2 everywhere
    assert rrmse_paper(pred, true).item() == pytest.approx(100 * 0.2 / 2.0)
    assert rrmse(pred, true).item() == pytest.approx(100 * 0.2 / math.sqrt(5.0))
    assert rrmse_paper(pred, true, per_channel=True).tolist() == pytest.approx([20.0, 100 * 0.2 / 3])
    # the two differ by rms(true) / mean(true): one number cannot stand for the other
    assert (rrmse(pred, true) / rrmse_paper(pred, true)).item() == pytest.approx(2.0 / math.sqrt(5.0))


def test_rrmse_paper_matches_loop_reference_and_pools_grids() -> None:
    true, pred = fields(1) + 4.0, fields(2) + 4.0
    t, p = true.numpy(), pred.numpy()
    rmse = math.sqrt(sum(float((p[i] - t[i]) ** 2) for i in np.ndindex(t.shape)) / t.size)
    assert rrmse_paper(pred, true).item() == pytest.approx(100 * rmse / float(t.mean()), rel=1e-12)
    split = rrmse_paper([pred[:, :1], pred[:, 1:]], [true[:, :1], true[:, 1:]])
    assert split.item() == pytest.approx(rrmse_paper(pred, true).item(), rel=1e-12)


def test_ssim_and_psnr_paper_scale_by_the_train_range_and_score_per_image() -> None:
    true = fields(3, (4, 2, 16, 16)) * 10 + 100
    pred = true + fields(4, (4, 2, 16, 16))
    lo, hi = torch.tensor([50.0, 60.0]), torch.tensor([150.0, 140.0])
    p_s = (pred - lo.view(1, -1, 1, 1)) / (hi - lo).view(1, -1, 1, 1)
    t_s = (true - lo.view(1, -1, 1, 1)) / (hi - lo).view(1, -1, 1, 1)
    # PSNR: per image over (C, H, W), then the mean over images
    per_image = [10 * math.log10(1.0 / float((p_s[n] - t_s[n]).pow(2).mean())) for n in range(4)]
    assert psnr_paper(pred, true, lo, hi).item() == pytest.approx(float(np.mean(per_image)), rel=1e-6)
    # SSIM: torchmetrics defaults (11x11, sigma 1.5) on the scaled fields with data_range 1, per image
    images = [float(structural_similarity_index_measure(p_s[n : n + 1].float(), t_s[n : n + 1].float(),
                                                        data_range=1.0)) for n in range(4)]
    assert ssim_paper(pred, true, lo, hi).item() == pytest.approx(float(np.mean(images)), rel=1e-5)
    assert ssim_paper(true, true, lo, hi).item() == pytest.approx(1.0)
    # a wider train range makes the same error look smaller, unlike ours (the truth's own range)
    wide = psnr_paper(pred, true, lo - 100, hi + 100)
    assert wide > psnr_paper(pred, true, lo, hi)
    # fields on two grids: the channel mean (SSIM) and each image's MSE pooled over grids (PSNR)
    parts = ([pred[:, :1], pred[:, 1:]], [true[:, :1], true[:, 1:]], [lo[:1], lo[1:]], [hi[:1], hi[1:]])
    assert ssim_paper(*parts).item() == pytest.approx(ssim_paper(pred, true, lo, hi).item(), rel=1e-6)
    assert psnr_paper(*parts).item() == pytest.approx(psnr_paper(pred, true, lo, hi).item(), rel=1e-6)
    with pytest.raises(ValueError, match="hi > lo"):
        psnr_paper(pred, true, hi, lo)


def test_every_field_metric_ranks_the_closer_prediction_better():
    """The registry's direction is each score's: a prediction with less noise scores better on every metric."""
    g = torch.Generator().manual_seed(0)
    true = 280.0 + torch.randn(3, 2, 16, 32, generator=g).cumsum(-1)
    noise = torch.randn(true.shape, generator=g)
    lo, hi = true.amin(dim=(0, 2, 3)), true.amax(dim=(0, 2, 3))
    for key, metric in FIELD_METRICS.items():
        close, far = (float(metric.score(true + s * noise, true, lo, hi)) for s in (0.1, 1.0))
        assert (close < far) if metric.lower_is_better else (close > far), key


# ---------------------------------------------------------------- WeatherBench-style RMSE and ACC

LAT8 = torch.linspace(-78.75, 78.75, 8)


def wave_fields(days: int = 3, channels: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(climatology, a, b) of shape (days, channels, 8, 16): a large pole-to-equator climatology and two anomaly
    patterns that are orthogonal with the same area-weighted norm on every row (cos and sin of longitude)."""
    lon = torch.arange(16, dtype=torch.float64) * 2 * math.pi / 16
    lat = torch.deg2rad(LAT8.double())
    clim = (280.0 + 30.0 * torch.cos(lat))[:, None].expand(8, 16).expand(days, channels, 8, 16).clone()
    a = torch.cos(lon).expand(days, channels, 8, 16).clone()
    b = torch.sin(lon).expand(days, channels, 8, 16).clone()
    return clim, a, b


def test_lat_weights_are_weatherbench2_cell_areas_summing_to_the_row_count() -> None:
    """WeatherBench2: cell bounds -90, the midpoints between latitudes, +90; weight = sin(upper) - sin(lower),
    normalised to mean 1 (so the weights sum to the number of rows)."""
    for lat in (torch.linspace(-87.1875, 87.1875, 32), torch.linspace(-90.0, 90.0, 121)):
        bounds = torch.deg2rad(torch.cat([torch.tensor([-90.0]), (lat[1:] + lat[:-1]) / 2, torch.tensor([90.0])]).double())
        area = torch.sin(bounds[1:]) - torch.sin(bounds[:-1])
        w = lat_weights(lat)
        assert torch.allclose(w, area / area.mean(), rtol=1e-12)
        assert w.sum().item() == pytest.approx(len(lat))


def test_area_mean_weights_rows_by_cell_area() -> None:
    w = lat_weights(LAT8)
    x = torch.zeros(1, 1, 8, 16, dtype=torch.float64)
    x[..., 3, :] = 2.0  # one row: its weight over 8 rows
    assert area_mean(x, w).item() == pytest.approx(2.0 * w[3].item() / 8)
    assert torch.allclose(area_mean(torch.ones(2, 3, 8, 16), w), torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="area weights"):
        area_mean(x, torch.ones(16))


def test_rmse_perfect_forecast_and_known_errors() -> None:
    w = lat_weights(LAT8)
    truth = fields(5, (2, 2, 8, 16)) + 280.0
    assert rmse(truth, truth, w).tolist() == [0.0, 0.0]
    pred = truth.clone()
    pred[0, 0] += 3.0  # channel 0: 3 K on day 0, 4 K on day 1 -> sqrt((9 + 16) / 2), not the mean 3.5
    pred[1, 0] += 4.0
    pred[:, 1, 2, :] += 1.0  # channel 1: 1 on one latitude row -> sqrt(w_2 / 8)
    assert rmse(pred, truth, w).tolist() == pytest.approx([math.sqrt(12.5), math.sqrt(w[2].item() / 8)])
    assert area_mse(pred, truth, w)[:, 0].tolist() == pytest.approx([9.0, 16.0])


def test_acc_perfect_climatology_and_a_known_angle() -> None:
    w = lat_weights(LAT8)
    clim, a, b = wave_fields()
    truth = clim + a
    assert acc(truth, truth, clim, w).tolist() == pytest.approx([1.0, 1.0])
    assert acc(clim, truth, clim, w).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)  # the climatology scores 0
    theta = 0.3
    rotated = clim + math.cos(theta) * a + math.sin(theta) * b
    assert acc(clim + 5.0 * a, rotated, clim, w).tolist() == pytest.approx([math.cos(theta)] * 2)  # amplitude-free
    # one day perfect, one uncorrelated: the mean of the days' correlations
    pred = torch.stack([truth[0], clim[1] + b[1]])
    assert anomaly_correlation(pred, truth[:2], clim[:2], w)[:, 0].tolist() == pytest.approx([1.0, 0.0], abs=1e-12)
    assert acc(pred, truth[:2], clim[:2], w).tolist() == pytest.approx([0.5, 0.5])


def test_acc_is_not_a_pearson_correlation_of_the_raw_fields() -> None:
    """A forecast whose anomaly is unrelated to the day's (b against a) has no skill: ACC 0, although its raw
    field, dominated by the climatology's gradient, correlates almost perfectly with the truth."""
    w = lat_weights(LAT8)
    clim, a, b = wave_fields(days=1, channels=1)
    pred, truth = clim + b, clim + a
    pearson = float(np.corrcoef(pred.ravel().numpy(), truth.ravel().numpy())[0, 1])
    assert pearson > 0.9
    assert acc(pred, truth, clim, w).item() == pytest.approx(0.0, abs=1e-12)
    # a bias the climatology lacks lowers the (uncentred) ACC; a Pearson correlation would not see it
    assert acc(clim + a + 1.0, truth, clim, w).item() == pytest.approx(math.sqrt(0.5 / 1.5))


def test_rmse_and_acc_of_fields_on_several_grids_score_each_on_its_own() -> None:
    w8, w4 = lat_weights(LAT8), lat_weights(torch.linspace(-67.5, 67.5, 4))
    clim, a, b = wave_fields(channels=1)
    coarse_clim, coarse_a = clim[..., ::2, ::2], a[..., ::2, ::2]
    pred, truth = [clim + b, coarse_clim + 2 * coarse_a], [clim + a, coarse_clim + coarse_a]
    climatology = [clim, coarse_clim]
    assert acc(pred, truth, climatology, [w8, w4]).tolist() == pytest.approx([0.0, 1.0], abs=1e-12)
    assert rmse(pred, truth, [w8, w4]).tolist() == pytest.approx(
        [rmse(pred[0], truth[0], w8).item(), rmse(pred[1], truth[1], w4).item()])


def test_display_units_show_specific_humidity_in_grams_per_kilogram() -> None:
    assert display_unit("kg kg**-1") == ("g kg**-1", 1e3)
    assert display_unit("K") == ("K", 1.0) and display_unit("m**2 s**-2") == ("m**2 s**-2", 1.0)


def test_crps_hand_values_and_the_pairwise_definition() -> None:
    """Members {0, 2} around a truth of 1: E|X - y| = 1, E|X - X'| over distinct pairs = 2, so CRPS = 0; one member
    scores its absolute error; a random ensemble equals the O(M^2) pairwise formula on equal-area rows."""
    w = torch.ones(2)
    truth = torch.ones(1, 1, 2, 3)
    members = torch.stack([torch.zeros(1, 1, 2, 3), 2 * torch.ones(1, 1, 2, 3)], dim=1)
    assert float(crps(members, truth, w)[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(crps(members[:, :1], truth, w)[0]) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 5, 2, 3, 6, generator=g), torch.randn(4, 2, 3, 6, generator=g)
    pairs = (x[:, :, None] - x[:, None]).abs().sum((1, 2)) / (5 * 4)
    expected = ((x - y[:, None]).abs().mean(1) - pairs / 2).mean((0, 2, 3))
    torch.testing.assert_close(crps(x, y, torch.ones(3)), expected.double())


def test_spread_skill_hand_value() -> None:
    """Members y + 1 +- a: their mean misses by 1 everywhere, their unbiased variance is 2 a^2: ratio sqrt(2) a."""
    truth = torch.zeros(3, 2, 4, 5)
    members = torch.stack([truth + 1.5, truth + 0.5], dim=1)  # a = 0.5
    torch.testing.assert_close(spread_skill(members, truth, torch.ones(4)), torch.full((2,), math.sqrt(2) * 0.5,
                                                                                         dtype=torch.float64))
