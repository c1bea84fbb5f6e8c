"""Batched augmentations and sparsity masks for z-scored fields ``(batch, channel, lat, lon)``.

Every random draw goes through the ``torch.Generator`` passed in (it may live on the CPU while
the data live on a GPU: draws are made on the generator's device and moved to the data), so a
run is reproducible under a seed. Nothing loops over samples in Python.

Two modes (``AugmentConfig.mode``):

* ``paper``: the paper's views (section 3.3.1): bicubic resize by ``resize_factor`` (64x32 ->
  160x80), random crop to ``crop_factor`` (144x72, also the encoder input), ``smooth_kernel`` box
  smoothing. Bicubic interpolation is not clamped, as in the reference, so values can overshoot
  the input range slightly near sharp gradients; it does not wrap in longitude either.
* ``native``: the same kind of invariance on the native grid, much cheaper: a random periodic
  longitude roll as large as the paper's crop offset and a box filter of the same physical size.

Masked points are set to 0, the normalised mean (docs/CONVENTIONS.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from sparta.config import AugmentConfig
from sparta.data.store import DataError


def box_smooth(x: Tensor, kernel: int) -> Tensor:
    """``kernel x kernel`` moving average per channel; ``kernel=1`` returns ``x`` unchanged.

    Longitude is padded circularly (the globe wraps) and latitude by replicating the edge rows,
    so a constant field stays constant everywhere. The reference zero-pads instead, which on
    z-scored data pulls the border cells towards the mean (darkens the borders). An even kernel
    is centred half a cell towards the end of each axis.
    """
    if kernel == 1:
        return x
    lo, hi = (kernel - 1) // 2, kernel // 2
    padded = F.pad(F.pad(x, (lo, hi, 0, 0), mode="circular"), (0, 0, lo, hi), mode="replicate")
    return F.avg_pool2d(padded, kernel, stride=1)


def random_keep_mask(
    batch: int,
    n_lat: int,
    n_lon: int,
    low: float,
    high: float,
    generator: torch.Generator,
    channels: int = 1,
    device: torch.device | str | None = None,
) -> Tensor:
    """Observation mask ``(batch, channels, n_lat, n_lon)``, True = observed.

    Each sample draws a ratio ``r ~ U[low, high)`` and hides exactly ``round(r * n)`` of its
    ``n = n_lat * n_lon`` points (per channel, independently, when ``channels > 1``), so the
    realised sparsity equals the drawn ratio to within ``1/(2n)`` instead of scattering around it
    as independent coin flips would. ``channels=1`` is one mask shared by all channels.
    """
    n = n_lat * n_lon
    gdev = generator.device
    ratio = low + (high - low) * torch.rand(batch, generator=generator, device=gdev)
    hidden = torch.round(ratio * n).long()
    order = torch.rand(batch, channels, n, generator=generator, device=gdev).argsort(dim=-1)
    kept_by_rank = torch.arange(n, device=gdev) >= hidden[:, None, None]  # the first `hidden` ranks hide
    keep = torch.empty(batch, channels, n, dtype=torch.bool, device=gdev)
    keep.scatter_(-1, order, kept_by_rank.expand(batch, channels, n))
    return keep.view(batch, channels, n_lat, n_lon).to(device if device is not None else gdev)


def random_crop(x: Tensor, size: tuple[int, int], generator: torch.Generator) -> Tensor:
    """Per-sample random ``size = (h, w)`` window of ``x``, one offset per sample for all channels.

    Offsets are drawn as ``top`` for every sample, then ``left`` for every sample, each uniform
    over all windows that fit (like torchvision's ``RandomCrop``, batched with gathers).
    """
    b, c, n_lat, n_lon = x.shape
    h, w = size
    if h > n_lat or w > n_lon:
        raise ValueError(f"crop {size} is larger than the field {(n_lat, n_lon)}")
    top = torch.randint(0, n_lat - h + 1, (b,), generator=generator, device=generator.device).to(x.device)
    left = torch.randint(0, n_lon - w + 1, (b,), generator=generator, device=generator.device).to(x.device)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(b, c, h, n_lon)
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(b, c, h, w)
    return x.gather(2, rows).gather(3, cols)


def periodic_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Roll each sample eastwards by its own ``s ~ U{0..max_shift}`` longitude cells.

    Drawing from ``0..max_shift`` (not ``-max_shift..max_shift``) mirrors the crop offsets of the
    paper mode, which run from 0 to the maximum: two independently shifted views are then at most
    ``max_shift`` cells apart, as two paper crops are.
    """
    b, c, n_lat, n_lon = x.shape
    shift = torch.randint(0, max_shift + 1, (b,), generator=generator, device=generator.device).to(x.device)
    cols = (torch.arange(n_lon, device=x.device) - shift[:, None]) % n_lon
    return x.gather(3, cols[:, None, None, :].expand(b, c, n_lat, n_lon))


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    # Bicubic without clamping (reference behaviour): may overshoot near sharp gradients.
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def _nearest_odd(value: float) -> int:
    return 2 * math.floor(value / 2) + 1


class Augmenter:
    """Builds the encoder inputs and contrastive views of a batch, in one of the two modes.

    ``input_hw`` is the encoder's input size (paper: the crop size, 64x32 -> 144x72; native: the
    grid). In native mode the shift is ``round(n_lon * (resize - crop) / resize)`` cells (6 for 64
    longitudes: the paper's 16-pixel crop range is 6.4 native cells) and the box filter is the
    nearest odd size to ``smooth_kernel / crop_factor`` (5 / 2.25 = 2.2 native cells -> 3), so it
    stays centred; kernel 1 stays 1.
    """

    def __init__(self, cfg: AugmentConfig, n_lat: int, n_lon: int):
        self.cfg = cfg
        self.native_hw = (n_lat, n_lon)
        if cfg.mode == "paper":
            self.input_hw = (round(n_lat * cfg.crop_factor), round(n_lon * cfg.crop_factor))
            self.resize_hw = (round(n_lat * cfg.resize_factor), round(n_lon * cfg.resize_factor))
            self.kernel = cfg.smooth_kernel
            self.max_shift = 0
        else:
            self.input_hw = self.resize_hw = self.native_hw
            self.kernel = max(1, _nearest_odd(cfg.smooth_kernel / cfg.crop_factor))
            self.max_shift = round(n_lon * (cfg.resize_factor - cfg.crop_factor) / cfg.resize_factor)

    def encoder_input(self, x: Tensor) -> Tensor:
        """Un-augmented encoder input (downstream and reconstruction inputs): resized, no crop/smoothing."""
        return _resize(x, self.input_hw)

    def _random_mask(self, x: Tensor, generator: torch.Generator, low: float, high: float) -> Tensor:
        b, c, n_lat, n_lon = x.shape
        channels = c if self.cfg.mask_per_channel else 1
        keep = random_keep_mask(b, n_lat, n_lon, low, high, generator, channels, x.device)
        return x.masked_fill(~keep, 0.0)

    def _fixed_mask(self, x: Tensor, keep: Tensor) -> Tensor:
        if keep.dtype != torch.bool or tuple(keep.shape[-2:]) != self.native_hw or keep.dim() not in (2, 3, 4):
            raise DataError(f"observation mask must be bool of shape (n_lat, n_lon) = {self.native_hw} "
                            f"or (batch, [channel,] n_lat, n_lon); got {keep.dtype} {tuple(keep.shape)}")
        if keep.dim() == 3:
            keep = keep[:, None]
        return x.masked_fill(~keep.to(x.device), 0.0)

    def mask(self, x: Tensor, generator: torch.Generator, low: float, high: float,
             keep: Tensor | None = None) -> Tensor:
        """Sparse encoder input: hide points with ratio ``U[low, high)`` (or ``keep``), then resize.

        ``mask_on='native'`` hides native grid points before resizing, so a hidden value cannot
        leak into the input through interpolation; ``'upsampled'`` (the reference) masks the
        resized input. A fixed ``keep`` (True = observed, e.g. station locations) is always on the
        native grid and replaces the random mask.
        """
        if keep is not None:
            return self.encoder_input(self._fixed_mask(x, keep))
        if self.cfg.mask_on == "native":
            return self.encoder_input(self._random_mask(x, generator, low, high))
        return self._random_mask(self.encoder_input(x), generator, low, high)

    def view(self, x: Tensor, generator: torch.Generator, masked: bool,
             with_target: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Contrastive view of ``x`` at ``input_hw``, masked with ratio ``U[mask_low, mask_high)`` if asked.

        Paper mode: (native mask), resize to ``resize_hw``, random crop to ``input_hw``, box smooth,
        (upsampled mask). Native mode: (mask), periodic longitude shift, box smooth, (mask).
        ``mask_on`` picks which of the bracketed masks applies: 'native' hides points before any
        interpolation or smoothing; 'upsampled' masks the finished view as the reference does.

        ``with_target`` also returns the aligned stage-2 target at the native grid: the clean
        (unmasked, unsmoothed) field under the same crop or shift, resized back to the native
        grid in paper mode (an exact roll in native mode). The reference reconstructs the
        uncropped field instead, which the decoder cannot know how to align with the view.
        The random draws do not depend on ``with_target``: the view is the same either way.
        """
        cfg = self.cfg
        c = x.shape[1]
        view = x
        if masked and cfg.mask_on == "native":
            view = self._random_mask(view, generator, cfg.mask_low, cfg.mask_high)
        stack = torch.cat([view, x], dim=1) if with_target else view  # one crop/shift for both
        if cfg.mode == "paper":
            stack = random_crop(_resize(stack, self.resize_hw), self.input_hw, generator)
        else:
            stack = periodic_shift(stack, self.max_shift, generator)
        view = box_smooth(stack[:, :c], self.kernel)
        if masked and cfg.mask_on == "upsampled":
            view = self._random_mask(view, generator, cfg.mask_low, cfg.mask_high)
        if not with_target:
            return view
        return view, _resize(stack[:, c:], self.native_hw)
