"""Evaluation metrics (paper sections 6.1.3 and 7.1.1, equations 18-19).

Fields are ``(N, C, H, W)`` with latitude ascending along ``H``; RRMSE, SSIM and PSNR also take
lists of them, one per grid (variables on several grids, :mod:`sparta.grids`): every channel is
scored on its own grid, in the lists' channel order. No function here normalises or
denormalises: the caller passes the space it wants. Reported numbers use physical
(denormalised) fields for RRMSE, SSIM and PSNR, and both raw and standardised latents for latent
density, realism and smoothness. Field metrics are computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sparta.grids import Fields


def _per_grid_channels(metric, pred: list, true: list, per_channel: bool, **kwargs) -> torch.Tensor:
    """A channel-averaged ``metric`` of fields on several grids: each channel's value on its grid."""
    values = torch.cat([metric(p, t, per_channel=True, **kwargs) for p, t in zip(pred, true, strict=True)])
    return values if per_channel else values.mean()


def _check_fields(pred: torch.Tensor, true: torch.Tensor) -> None:
    if pred.shape != true.shape or pred.ndim != 4:
        raise ValueError(
            f"expected pred and true of equal shape (N, C, H, W), "
            f"got {tuple(pred.shape)} and {tuple(true.shape)}"
        )


def lat_weights(lat_deg: torch.Tensor) -> torch.Tensor:
    """Cell-area latitude weights normalised to mean 1.

    A cell spans from the midpoints between neighbouring latitudes, clipped to +-90 deg, so its
    area is proportional to ``|sin(upper) - sin(lower)|``. On a regular grid without poles (even
    ``LAT``, e.g. 32) this is exactly proportional to ``cos(lat)``. On a grid that includes the
    poles (odd ``LAT``, e.g. 121), the pole cell is the half cell ``[90 - dlat/2, 90]`` with
    weight proportional to ``1 - cos(dlat/2)`` (small but non-zero, unlike plain ``cos(90) = 0``).

    Args:
        lat_deg: ``(H,)`` latitudes in degrees, monotone, at least two.

    Returns:
        ``(H,)`` weights with mean 1 (float64).
    """
    if lat_deg.ndim != 1 or lat_deg.numel() < 2:
        raise ValueError(
            f"lat_weights needs a 1-D tensor of at least two latitudes, got shape {tuple(lat_deg.shape)}"
        )
    lat = lat_deg.double()
    mid = (lat[1:] + lat[:-1]) / 2
    first = lat[:1] - (lat[1] - lat[0]) / 2
    last = lat[-1:] + (lat[-1] - lat[-2]) / 2
    bounds = torch.deg2rad(torch.cat([first, mid, last]).clamp(-90.0, 90.0))
    area = (torch.sin(bounds[1:]) - torch.sin(bounds[:-1])).abs()
    return area / area.mean()


def rrmse(
    pred: torch.Tensor,
    true: torch.Tensor,
    per_channel: bool = False,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """"RRMSE (L2, ours)": relative root mean squared error in percent.

    ``RRMSE = ||pred - true||_2 / ||true||_2 * 100``, the norms taken over all samples, channels
    and grid points jointly (pooled: one ratio for the whole set, not a mean of per-sample ratios;
    for a per-lead-time curve pass the samples of one lead time). With ``per_channel`` the same
    ratio is taken per channel. With ``weights`` both squared norms are weighted:
    ``sqrt(sum w (pred - true)^2) / sqrt(sum w true^2) * 100`` (the scale of ``w`` cancels).

    Space: whatever the caller passes; reported numbers use physical (denormalised) fields. The
    ``||true||`` denominator stays well conditioned for u/v winds whose mean is near 0 (unlike the
    authors' division by the mean of the truth, :func:`rrmse_paper`, which the paper's tables use).

    Args:
        pred, true: ``(N, C, H, W)``.
        per_channel: return ``(C,)`` instead of a scalar.
        weights: ``None`` for the unweighted paper metric; else ``(H,)`` latitude weights (e.g.
            :func:`lat_weights`) or ``(H, W)`` weights.

    Lists of fields on several grids pool every point of every grid (unweighted only).

    Returns:
        Scalar, or ``(C,)`` with ``per_channel`` (float64).
    """
    if isinstance(pred, list):
        if weights is not None:
            raise ValueError("rrmse weights are per grid; score fields on several grids without weights")
        if per_channel:
            return torch.cat([rrmse(p, t, per_channel=True) for p, t in zip(pred, true, strict=True)])
        err2 = sum((p.double() - t.double()).pow(2).sum() for p, t in zip(pred, true, strict=True))
        return (err2 / sum(t.double().pow(2).sum() for t in true)).sqrt() * 100.0
    _check_fields(pred, true)
    p, t = pred.double(), true.double()
    err2, ref2 = (p - t).pow(2), t.pow(2)
    if weights is not None:
        w = weights.double().to(p.device)
        w = w[:, None].expand(-1, p.shape[-1]) if w.ndim == 1 else w
        if w.shape != p.shape[-2:]:
            raise ValueError(
                f"rrmse weights must be (H,) or (H, W) = {tuple(p.shape[-2:])}, got {tuple(weights.shape)}"
            )
        err2, ref2 = err2 * w, ref2 * w
    dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
    return (err2.sum(dim=dims) / ref2.sum(dim=dims)).sqrt() * 100.0


def rrmse_paper(pred: Fields, true: Fields, per_channel: bool = False) -> torch.Tensor:
    """RRMSE as the authors compute it (paper tables 1-3, 5): ``RMSE / mean(true) * 100`` in percent.

    ``RMSE = sqrt(mean (pred - true)^2)`` and ``mean(true)`` are taken over all samples, channels
    and grid points jointly (pooled over channels in physical units, as the authors'
    ``compute_error`` and ``RRMSE``). Pooled over ERA5's channels both are dominated by z850
    (~1.4e4 m2/s2), so this reads higher than :func:`rrmse` by the ratio
    ``rms(true) / mean(true)`` (2.2 on the synthetic record: 4.11% against 1.87% for 1-day persistence). With ``per_channel`` each channel is
    divided by its own mean, which is ill-conditioned for u and v (means near 0); per-channel
    tables use :func:`rrmse`. Lists of fields on several grids pool every point of every grid.

    Args:
        pred, true: ``(N, C, H, W)`` (physical units for reported numbers), or one per grid.
        per_channel: return ``(C,)`` instead of a scalar.

    Returns:
        Scalar, or ``(C,)`` with ``per_channel`` (float64).
    """
    if isinstance(pred, list):
        if per_channel:
            return torch.cat([rrmse_paper(p, t, per_channel=True) for p, t in zip(pred, true, strict=True)])
        n = sum(t.numel() for t in true)
        err2 = sum((p.double() - t.double()).pow(2).sum() for p, t in zip(pred, true, strict=True))
        return (err2 / n).sqrt() / (sum(t.double().sum() for t in true) / n) * 100.0
    _check_fields(pred, true)
    p, t = pred.double(), true.double()
    dims = (0, 2, 3) if per_channel else (0, 1, 2, 3)
    return (p - t).pow(2).mean(dim=dims).sqrt() / t.mean(dim=dims) * 100.0


def area_mean(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Area-weighted mean over the last two axes (lat, lon) of ``x`` (float64), with ``(H,)`` latitude
    weights of mean 1 (:func:`lat_weights`): ``mean_{lat, lon} w_lat x``."""
    w = weights.double().to(x.device)
    if w.shape != x.shape[-2:-1]:
        raise ValueError(f"area weights must be (H,) = ({x.shape[-2]},), got {tuple(weights.shape)}")
    return (x.double() * w[:, None]).mean(dim=(-2, -1))


def _each_grid(score, pred: Fields, true: Fields, weights, *others) -> torch.Tensor:
    """``score`` of one grid's fields, or its per-channel values on every grid concatenated in channel order
    (``weights`` and each of ``others``: one per grid)."""
    if not isinstance(pred, list):
        return score(pred, true, weights, *others)
    return torch.cat([score(*args) for args in zip(pred, true, weights, *others, strict=True)], dim=-1)


def area_mse(pred: Fields, true: Fields, weights) -> torch.Tensor:
    """``(N, C)`` area-weighted mean squared error of each sample and channel (WeatherBench2's ``MSE`` before its
    time mean). ``weights``: :func:`lat_weights` of the grid (one per grid for fields on several)."""
    def one(p, t, w):
        _check_fields(p, t)
        return area_mean((p.double() - t.double()).pow(2), w)
    return _each_grid(one, pred, true, weights)


def rmse(pred: Fields, true: Fields, weights) -> torch.Tensor:
    """WeatherBench2's RMSE of each channel, in the fields' own unit: ``sqrt(mean_n area_mean((pred - true)^2))``.

    The square root is taken after the mean over the samples (days) of the area-weighted MSE, as WeatherBench2
    recommends (its ``MSE`` then the square root), not a mean of per-day RMSEs.

    Args:
        pred, true: ``(N, C, H, W)`` in physical units (or one per grid).
        weights: ``(H,)`` :func:`lat_weights` (or one per grid).

    Returns:
        ``(C,)`` (float64).
    """
    return area_mse(pred, true, weights).mean(dim=0).sqrt()


def anomaly_correlation(pred: Fields, true: Fields, climatology: Fields, weights) -> torch.Tensor:
    """``(N, C)`` anomaly correlation coefficient of each sample and channel (WeatherBench2's ``ACC`` per time).

    With the anomalies ``f = pred - clim`` and ``a = true - clim`` from the SAME climatology of each sample's
    valid day: ``area_mean(f a) / sqrt(area_mean(f^2) area_mean(a^2))``, uncentred (the anomalies' spatial mean is
    not removed, as in WeatherBench2). A sample whose forecast (or truth) has no anomaly anywhere (the climatology
    itself) scores 0: it says nothing about the day's departure from the climatology.

    Args:
        pred, true, climatology: ``(N, C, H, W)`` in physical units (or one per grid); ``climatology`` holds
            each sample's climatology of its valid day.
        weights: ``(H,)`` :func:`lat_weights` (or one per grid).
    """
    def one(p, t, w, c):
        _check_fields(p, t)
        _check_fields(c, t)
        f, a = p.double() - c.double(), t.double() - c.double()
        norm = (area_mean(f.pow(2), w) * area_mean(a.pow(2), w)).sqrt()
        return torch.where(norm > 0, area_mean(f * a, w) / norm.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    return _each_grid(one, pred, true, weights, climatology)


def acc(pred: Fields, true: Fields, climatology: Fields, weights) -> torch.Tensor:
    """WeatherBench2's anomaly correlation coefficient of each channel: :func:`anomaly_correlation` of every
    sample, averaged over the samples. 1 for a perfect forecast, 0 for the climatology; unlike a Pearson
    correlation of the raw fields it does not credit a forecast for the climatological pattern (a seasonal
    cycle or the pole-to-equator gradient) that the climatology already has.

    Returns:
        ``(C,)`` (float64).
    """
    return anomaly_correlation(pred, true, climatology, weights).mean(dim=0)


def crps(members: Fields, true: Fields, weights) -> torch.Tensor:
    """The fair (unbiased-in-the-ensemble-size) CRPS of an ensemble per channel, area-weighted, mean over samples.

    ``E|X - y| - E|X - X'| / 2`` with the second mean over the ``M (M - 1)`` pairs of distinct members
    (WeatherBench2's ``CRPS`` with its fair spread term), from the sorted members: ``sum_{i,j} |x_i - x_j| =
    2 sum_i (2i - M - 1) x_(i)``. One member gives its absolute error (the MAE of a deterministic forecast).

    Args:
        members: ``(N, M, C, H, W)`` (or one per grid); true: ``(N, C, H, W)``; weights: :func:`lat_weights`.

    Returns:
        ``(C,)`` (float64), in the fields' unit.
    """
    def one(x, t, w):
        _check_fields(x[:, 0], t)
        x, t = x.double(), t.double()
        m = x.shape[1]
        skill = (x - t[:, None]).abs().mean(1)
        if m == 1:
            return area_mean(skill, w).mean(0)
        rank = torch.arange(1, m + 1, dtype=torch.float64, device=x.device).view(1, m, 1, 1, 1)
        spread = ((2 * rank - m - 1) * x.sort(dim=1).values).sum(1) / (m * (m - 1))
        return area_mean(skill - spread, w).mean(0)
    return _each_grid(one, members, true, weights)


def spread_skill(members: Fields, true: Fields, weights) -> torch.Tensor:
    """``(C,)`` ensemble spread over skill: sqrt of the area-weighted mean of the members' unbiased variance over
    the RMSE of their mean (WeatherBench2's ``SpreadSkillRatio``); ``sqrt((M + 1) / M)`` for a calibrated
    ensemble of ``M`` members, below it for an overconfident one."""
    def one(x, t, w):
        _check_fields(x[:, 0], t)
        x = x.double()
        spread = area_mean(x.var(dim=1, unbiased=True), w).mean(0).sqrt()
        return spread / area_mean((x.mean(1) - t.double()).pow(2), w).mean(0).sqrt()
    return _each_grid(one, members, true, weights)


DISPLAY_UNITS = {"kg kg**-1": ("g kg**-1", 1e3)}
"""Units shown in tables and figures instead of the store's: specific humidity in g/kg (values ~1e-3 in kg/kg)."""


def display_unit(units: str | None) -> tuple[str, float]:
    """The unit a score in the store's ``units`` is shown in, and the factor that converts it (1 for most)."""
    return DISPLAY_UNITS.get(units or "", (units or "unknown units", 1.0))


def minmax_scale(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``(x - lo) / (hi - lo)`` per channel, float64: the authors' scaling before SSIM and PSNR, with ``lo``
    and ``hi`` the ``(C,)`` minimum and maximum of the downstream-train block in physical units."""
    lo = torch.as_tensor(lo, dtype=torch.float64).view(1, -1, 1, 1)
    hi = torch.as_tensor(hi, dtype=torch.float64).view(1, -1, 1, 1)
    if (hi <= lo).any():
        raise ValueError("minmax_scale needs hi > lo for every channel (a constant channel has no range)")
    return (x.double() - lo) / (hi - lo)


def ssim_paper(pred: Fields, true: Fields, lo, hi) -> torch.Tensor:
    """SSIM as the authors compute it: per image on min-max scaled fields, then averaged over images.

    Both fields are scaled with :func:`minmax_scale` (``lo``, ``hi``: per-channel minimum and maximum
    of the downstream-train block, physical units), then scored by torchmetrics
    ``structural_similarity_index_measure`` with ``data_range=1`` and its default Gaussian window
    (11x11, sigma 1.5), jointly over the channels of each image, and averaged over the images.
    Differences from :func:`ssim` (ours): the 11x11 window, the fixed train range instead of each
    channel's range in the truth, and the offset of the min-max scaling (SSIM's luminance term is
    not offset-invariant). Lists of fields on several grids: ``lo``/``hi`` one ``(C_g,)`` per grid,
    the channel mean over every grid.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure  # slow import, used here only

    if isinstance(pred, list):
        per_grid = [ssim_paper(p, t, a, b) for p, t, a, b in zip(pred, true, lo, hi, strict=True)]
        counts = [p.shape[1] for p in pred]
        return sum(v * c for v, c in zip(per_grid, counts)) / sum(counts)
    _check_fields(pred, true)
    p, t = minmax_scale(pred, lo, hi).float(), minmax_scale(true, lo, hi).float()
    return structural_similarity_index_measure(p, t, data_range=1.0).double()


def psnr_paper(pred: Fields, true: Fields, lo, hi) -> torch.Tensor:
    """PSNR as the authors compute it: per image on min-max scaled fields, then averaged over images.

    ``PSNR_n = 10 log10(1 / MSE_n)`` with ``MSE_n`` over the channels and grid points of image ``n``
    after :func:`minmax_scale` (train range, ``data_range=1``; torchmetrics
    ``peak_signal_noise_ratio(..., reduction="none", dim=(1, 2, 3))``); result ``mean_n PSNR_n``.
    :func:`psnr` (ours) pools the MSE over the batch per channel, with each channel's range in the
    truth, and averages channels. Lists of fields on several grids pool each image's MSE over
    every grid.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio  # slow import, used here only

    if isinstance(pred, list):
        err2 = sum((minmax_scale(p, a, b) - minmax_scale(t, a, b)).pow(2).sum((1, 2, 3))
                   for p, t, a, b in zip(pred, true, lo, hi, strict=True))
        mse = err2 / sum(t[0].numel() for t in true)
        return (10.0 * torch.log10(1.0 / mse)).mean()
    _check_fields(pred, true)
    p, t = minmax_scale(pred, lo, hi), minmax_scale(true, lo, hi)
    return peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3)).mean().double()


def _channel_ranges(true: torch.Tensor) -> list[float]:
    """``max - min`` of each channel of the true field over the batch and the grid."""
    flat = true.transpose(0, 1).reshape(true.shape[1], -1)
    return (flat.amax(dim=1) - flat.amin(dim=1)).tolist()


def ssim_sigma(kernel_size: int) -> float:
    """Gaussian sigma of the SSIM window: ``1.5 * kernel_size / 11``.

    torchmetrics sizes a Gaussian SSIM window from sigma alone (``2 * int(3.5 sigma + 0.5) + 1``)
    and ignores ``kernel_size``; scaling Wang et al.'s ``sigma = 1.5`` for an 11x11 window in
    proportion gives a window of exactly ``kernel_size`` for odd sizes 3..43 (11 -> 1.5, the
    torchmetrics default; 7 -> 0.955).
    """
    sigma = 1.5 * kernel_size / 11
    if kernel_size % 2 == 0 or not 3 <= kernel_size <= 43 or 2 * int(3.5 * sigma + 0.5) + 1 != kernel_size:
        raise ValueError(f"SSIM kernel_size must be odd and in 3..43, got {kernel_size}")
    return sigma


def ssim(
    pred: torch.Tensor, true: torch.Tensor, kernel_size: int = 7, per_channel: bool = False
) -> torch.Tensor:
    """Structural similarity, per channel then averaged over channels.

    For channel ``c``: ``SSIM_c`` = torchmetrics ``structural_similarity_index_measure`` of the
    ``(N, 1, H, W)`` slices with ``data_range_c = max(true_c) - min(true_c)`` over the batch
    (from the TRUE field only, so a prediction cannot change its own scale) and a
    ``kernel_size x kernel_size`` Gaussian window of sigma :func:`ssim_sigma`, averaged over the
    N images (torchmetrics reflect-pads the borders). Result: ``mean_c SSIM_c``.

    ``kernel_size`` defaults to 7 rather than torchmetrics' 11 (sigma 1.5): an 11-row window spans
    a third of the 32 latitudes of a 64x32 grid, so local statistics mix climate zones and the
    reflected polar borders; 7 (sigma 0.955) keeps the same shape at the grid's scale.
    ``kernel_size=11`` reproduces torchmetrics' default window.

    Space: the caller's; reported numbers use physical fields. With ``data_range`` taken from the
    true field, SSIM is invariant to scaling a channel of pred and true by one factor, but not to
    an offset (the luminance term depends on the means), so z-scored fields give other values.

    Args:
        pred, true: ``(N, C, H, W)``.
        kernel_size: odd window size, 3..43.
        per_channel: return ``(C,)`` instead of the channel mean.

    Returns:
        Scalar, or ``(C,)`` with ``per_channel`` (float64).
    """
    from torchmetrics.functional.image import structural_similarity_index_measure  # slow import, used here only

    if isinstance(pred, list):
        return _per_grid_channels(ssim, pred, true, per_channel, kernel_size=kernel_size)
    _check_fields(pred, true)
    sigma = ssim_sigma(kernel_size)
    # Dividing pred and true of channel c by data_range_c leaves SSIM_c unchanged (its constants
    # scale with data_range), so all channels share data_range 1 and go through one call; float32
    # is ~10x faster than float64 here and changes SSIM by < 1e-5 on physical ERA5-like fields.
    scale = 1.0 / torch.tensor(_channel_ranges(true), dtype=torch.float32).view(1, -1, 1, 1)
    p, t = pred.float() * scale, true.float() * scale
    if not per_channel:  # the mean over channels of SSIM_c is the SSIM of the joint call
        return structural_similarity_index_measure(p, t, sigma=sigma, kernel_size=kernel_size,
                                                   data_range=1.0).double()
    return torch.stack([
        structural_similarity_index_measure(p[:, c : c + 1], t[:, c : c + 1], sigma=sigma, kernel_size=kernel_size,
                                            data_range=1.0)
        for c in range(p.shape[1])
    ]).double()


def psnr(pred: torch.Tensor, true: torch.Tensor, per_channel: bool = False) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per channel then averaged over channels.

    For channel ``c``: ``PSNR_c = 10 log10(data_range_c^2 / MSE_c)`` (torchmetrics
    ``peak_signal_noise_ratio``), with ``MSE_c`` pooled over the whole batch and grid and
    ``data_range_c = max(true_c) - min(true_c)`` over the batch, from the TRUE field only.
    Result: ``mean_c PSNR_c``.

    Space: the caller's; with ``data_range`` taken from the same field, PSNR is invariant to a
    per-channel affine rescaling, so physical and normalised fields give the same value.

    Args:
        pred, true: ``(N, C, H, W)``.
        per_channel: return ``(C,)`` instead of the channel mean.

    Returns:
        Scalar, or ``(C,)`` with ``per_channel`` (float64).
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio  # slow import, used here only

    if isinstance(pred, list):
        return _per_grid_channels(psnr, pred, true, per_channel)
    _check_fields(pred, true)
    p, t = pred.double(), true.double()
    values = torch.stack(
        [
            peak_signal_noise_ratio(p[:, c], t[:, c], data_range=data_range)
            for c, data_range in enumerate(_channel_ranges(t))
        ]
    )
    return values if per_channel else values.mean()


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(A, B)`` squared Euclidean distances between rows of ``(A, D)`` and ``(B, D)``, exact."""
    return torch.cdist(x.double(), y.double(), compute_mode="donot_use_mm_for_euclid_dist").pow(2)


def latent_density(gen: torch.Tensor, ref: torch.Tensor, sigma: float = 20.0) -> torch.Tensor:
    """Latent density (paper eq. 18, Xu et al.), averaged over the generated set.

    ``D(g) = 1/|H| sum_j exp(-||g - h_j||^2 / (2 sigma^2))``; result ``mean_g D(g)``, in (0, 1].
    ``sigma = 20`` as in the paper. Space: the caller's latents; the score depends on their scale,
    so report it on raw and on standardised latents.

    Args:
        gen: ``(G, D)`` generated latents.
        ref: ``(R, D)`` reference latents (encodings of correctly preprocessed inputs).
        sigma: kernel width, > 0.

    Returns:
        Scalar (float64).
    """
    return torch.exp(-_sq_dists(gen, ref) / (2.0 * sigma**2)).mean()


def realism_score(gen: torch.Tensor, ref: torch.Tensor, k: int = 5, eps: float = 1e-12) -> torch.Tensor:
    """Realism score (paper eq. 19, Kynkaanniemi et al. 2019), averaged over the generated set.

    ``r_k(j)`` = distance from reference point ``h_j`` to its k-th nearest OTHER reference point;
    ``R(g) = max_j r_k(j) / max(||g - h_j||, eps)``; result ``mean_g R(g)``. Values above 1 mean
    ``g`` lies inside some reference point's k-NN ball. As in the paper (and the authors' code),
    the original method's pruning of the largest half of the radii is not applied.

    ``eps`` guards the division when ``g`` coincides with a reference point: the ratio is then
    ``r_k(j) / eps``, a very large finite number (the score is unbounded there) instead of inf.
    Space: the caller's latents (ratios of distances, so invariant to a global scale).

    Args:
        gen: ``(G, D)`` generated latents.
        ref: ``(R, D)`` reference latents, ``R > k``.
        k: neighbour rank (5 in the paper).
        eps: smallest distance used in the denominator.

    Returns:
        Scalar (float64).
    """
    if ref.shape[0] <= k:
        raise ValueError(f"realism_score needs more than k={k} reference points, got {ref.shape[0]}")
    ref_d = _sq_dists(ref, ref).sqrt()
    ref_d.fill_diagonal_(float("inf"))
    radii = ref_d.kthvalue(k, dim=1).values  # (R,)
    gen_d = _sq_dists(gen, ref).sqrt().clamp_min(eps)  # (G, R)
    return (radii[None, :] / gen_d).amax(dim=1).mean()


def step_distances(h: torch.Tensor, normalise: bool = False) -> torch.Tensor:
    """Temporal step (velocity) distances along a latent trajectory (paper section 7.1.1).

    ``d_t = ||h_t - h_{t-1}||_2^2`` for ``t = 1..T-1``. With ``normalise`` every distance is
    divided by the mean squared latent norm ``mean_t ||h_t||^2``, which makes models with
    different latent scales comparable (the tables report both).

    Args:
        h: ``(T, D)`` consecutive latents.
        normalise: divide by ``mean_t ||h_t||^2``.

    Returns:
        ``(T-1,)`` distances.
    """
    d = (h[1:] - h[:-1]).pow(2).sum(dim=1)
    return d / h.pow(2).sum(dim=1).mean() if normalise else d


def cycle_distances(h: torch.Tensor, normalise: bool = False) -> torch.Tensor:
    """Cycle (acceleration) distances along a latent trajectory (paper section 7.1.1).

    ``c_t = ||h_{t-1} - 2 h_t + h_{t+1}||_2^2`` for ``t = 1..T-2``; with ``normalise`` divided by
    ``mean_t ||h_t||^2`` as in :func:`step_distances`.

    Args:
        h: ``(T, D)`` consecutive latents.
        normalise: divide by ``mean_t ||h_t||^2``.

    Returns:
        ``(T-2,)`` distances.
    """
    d = (h[:-2] - 2.0 * h[1:-1] + h[2:]).pow(2).sum(dim=1)
    return d / h.pow(2).sum(dim=1).mean() if normalise else d


def eddy_correlation(pred: Fields, true: Fields) -> torch.Tensor:
    """(C,) pattern correlation of the zonal anomalies (each row minus its zonal mean), per sample, then
    averaged over samples: does a reconstruction put the weather where it is, beyond the zonal-mean
    band a climatology or a position-blind decoder paints? 0 for any zonally uniform prediction."""
    if isinstance(pred, list):
        return torch.cat([eddy_correlation(p, t) for p, t in zip(pred, true, strict=True)])
    _check_fields(pred, true)
    p, t = pred.double(), true.double()
    p = p - p.mean(dim=-1, keepdim=True)
    t = t - t.mean(dim=-1, keepdim=True)
    cov = (p * t).sum(dim=(-2, -1))
    norm = (p.pow(2).sum(dim=(-2, -1)) * t.pow(2).sum(dim=(-2, -1))).sqrt()
    return torch.where(norm > 0, cov / norm.clamp_min(torch.finfo(torch.float64).tiny), 0.0).mean(dim=0)


def mean_std(x: torch.Tensor) -> tuple[float, float]:
    """Mean and population standard deviation (``ddof = 0``) of all elements of ``x``."""
    x = x.double()
    return x.mean().item(), x.std(correction=0).item()


def embedding_std(h: torch.Tensor) -> float:
    """Collapse monitor: per-dimension std of L2-normalised embeddings, averaged over dimensions.

    ``mean_i std_n(h_n^i / ||h_n||)`` (population std). About ``1/sqrt(d)`` for embeddings spread
    over the sphere; near 0 when they collapse to one direction.

    Args:
        h: ``(N, d)`` embeddings.
    """
    return F.normalize(h.double(), dim=1).std(dim=0, correction=0).mean().item()


@dataclass(frozen=True)
class FieldMetric:
    """A score of decoded fields against the truth in physical units (forecast leads, diffusion): its table
    name, axis label, metrics.json definition, direction, and ``score(pred, true, lo, hi)`` (``lo``/``hi``:
    per-channel minimum and maximum of the downstream-train block, for the paper's min-max scaling).

    ``every_lead``: scored at every lead step of a forecast rollout, for a per-step curve (the RRMSEs: pooled
    sums, ~4 ms a step at the quick size). The others are scored at ``downstream.lead_times`` only (the windowed
    SSIMs cost ~90-120 ms a call, the PSNRs 6-8 ms): metrics.json has them ``at`` those leads,
    forecast_curves.csv has those rows, and the forecast figures draw those points."""

    table_name: str
    axis_label: str
    definition: str
    lower_is_better: bool
    score: Callable[[Fields, Fields, Any, Any], torch.Tensor]
    every_lead: bool = False


FIELD_METRICS: dict[str, FieldMetric] = {  # the paper's definition first, then ours; tables and figures follow this order
    "rrmse_paper": FieldMetric(
        "RRMSE (paper formula, %)", "RRMSE, paper formula (%)",
        "RRMSE (paper formula), %: sqrt(mean (pred - true)^2) / mean(true) x 100, pooled over samples, channels and "
        "grid points in physical units (the authors' compute_error); the paper's tables",
        True, lambda pred, true, lo, hi: rrmse_paper(pred, true), every_lead=True),
    "rrmse_l2": FieldMetric(
        "RRMSE (L2, ours, %)", "RRMSE, L2 (%)",
        "RRMSE (L2, ours), %: ||pred - true||_2 / ||true||_2 x 100, pooled in physical units; per channel "
        "(rrmse_l2_per_channel) it stays well conditioned where the paper formula divides by a mean near 0 (u850, v850)",
        True, lambda pred, true, lo, hi: rrmse(pred, true), every_lead=True),
    "ssim_paper": FieldMetric(
        "SSIM (paper: 11x11, train min-max, per image)", "SSIM, paper (11x11, train range)",
        "SSIM (paper): both fields min-max scaled per channel with the downstream-train block's minimum and maximum, "
        "torchmetrics defaults (11x11 Gaussian window, sigma 1.5, data range 1), per image jointly over channels, "
        "mean over images",
        False, ssim_paper),
    "ssim": FieldMetric(
        "SSIM (ours: 7x7, truth's range per channel)", "SSIM",
        "SSIM (ours): per channel, 7x7 Gaussian window (sigma 0.955), data range = the truth's max - min of that "
        "channel over the scored days, mean over channels",
        False, lambda pred, true, lo, hi: ssim(pred, true)),
    "psnr_paper": FieldMetric(
        "PSNR (paper: per image, train min-max, dB)", "PSNR, paper, per image (dB)",
        "PSNR (paper), dB: the same min-max scaling, 10 log10(1 / MSE) per image, mean over images",
        False, psnr_paper),
    "psnr": FieldMetric(
        "PSNR (ours: MSE pooled per channel, dB)", "PSNR (dB)",
        "PSNR (ours), dB: per channel, MSE pooled over the scored days, data range = the truth's max - min of that "
        "channel, mean over channels",
        False, lambda pred, true, lo, hi: psnr(pred, true)),
}
"""Every score of decoded fields: adding one here adds it to metrics.json, its definitions, the forecast tables
and curves."""


@dataclass(frozen=True)
class VariableMetric:
    """A score of each variable of decoded fields against the truth (WeatherBench2's per-variable metrics): its
    metrics.json definition, table name, direction, ``per_day(pred, true, climatology, weights) -> (N, C)`` (one
    value per scored day, so any subset of days, a lead or a baseline, is scored from the same values) and
    ``reduce((N, C)) -> (C,)`` over the days. ``in_units``: the value is in the variable's unit (shown in its
    display unit, :func:`display_unit`); otherwise it is unitless."""

    table_name: str
    definition: str
    lower_is_better: bool
    per_day: Callable[[Fields, Fields, Fields, Any], torch.Tensor]
    reduce: Callable[[torch.Tensor], torch.Tensor]
    in_units: bool


VARIABLE_METRICS: dict[str, VariableMetric] = {
    "rmse": VariableMetric(
        "RMSE",
        "RMSE per variable (WeatherBench2): sqrt of the mean over the scored days of the area-weighted mean "
        "squared error (latitude weights from the cells' sin(lat) bounds, mean 1), in the variable's unit "
        "(units; specific humidity in g kg**-1); forecasts at every lead step (a list, lead 1 first)",
        True, lambda pred, true, clim, w: area_mse(pred, true, w), lambda days: days.mean(0).sqrt(), True),
    "acc": VariableMetric(
        "ACC",
        "anomaly correlation coefficient per variable (WeatherBench2): the area-weighted, uncentred correlation "
        "of the forecast's and the truth's anomalies from the same climatology of the valid day, averaged over "
        "the scored days; 1 perfect, 0 the climatology (a forecast without anomaly scores 0)",
        False, anomaly_correlation, lambda days: days.mean(0), False),
}
"""Every per-variable score of decoded fields: adding one here adds it to every task's metrics.json entry (the
reconstructions, forecasts and their baselines, diffusion) and to the per-variable tables and figures."""


def variable_metrics_in(blocks) -> list[str]:
    """The per-variable metrics (in the registry's order) that every one of ``blocks`` (``{metric: ...}`` dicts of
    saved results) holds: results saved before a metric was registered lack it until they are scored again."""
    blocks = list(blocks)
    return [name for name in VARIABLE_METRICS if all(name in block for block in blocks)]
