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

Global grids wrap in longitude: the box filter pads circularly and native views roll. A regional
box (``Grid.periodic`` false, see ``sparta.domain``) does not: its east edge is not next to its
west edge, so there the box filter repeats the edge cells in longitude too, and native views are
shifted eastwards with the westernmost column repeated into the cells the shift opens (a
non-periodic shift of the same size) instead of rolled.

Masked points are set to 0, the normalised mean (docs/CONVENTIONS.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from sparta import grids
from sparta.config import AugmentConfig
from sparta.data.store import DataError
from sparta.grids import Fields, Grid

log = logging.getLogger(__name__)


def box_smooth(x: Tensor, kernel: int, periodic: bool = True) -> Tensor:
    """``kernel x kernel`` moving average per channel; ``kernel=1`` returns ``x`` unchanged.

    Longitude is padded circularly (the globe wraps; ``periodic=False``, a regional box: by
    replicating the edge columns) and latitude by replicating the edge rows, so a constant field
    stays constant everywhere. The reference zero-pads instead, which on
    z-scored data pulls the border cells towards the mean (darkens the borders). An even kernel
    is centred half a cell towards the end of each axis.

    Computed as two 1-D passes (longitude, then latitude) of ``kernel - 1`` shifted-slice sums:
    the same average as a ``kernel x kernel`` pooling up to float rounding, at ``2 k`` instead of
    ``k^2`` operations per cell.
    """
    if kernel == 1:
        return x
    lo, hi = (kernel - 1) // 2, kernel // 2
    n_lat, n_lon = x.shape[-2:]
    padded = F.pad(x, (lo, hi, 0, 0), mode="circular" if periodic else "replicate")
    out = padded[..., 0:n_lon].clone()
    for i in range(1, kernel):
        out += padded[..., i:i + n_lon]
    padded = F.pad(out, (0, 0, lo, hi), mode="replicate")
    out = padded[..., 0:n_lat, :].clone()
    for i in range(1, kernel):
        out += padded[..., i:i + n_lat, :]
    return out.mul_(1.0 / (kernel * kernel))


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
    u = torch.rand(batch, channels, n, generator=generator, device=gdev)
    # The hidden points are the `hidden` smallest draws of each row (what ranking all n draws by
    # a full sort selects), found without sorting: a first guess by threshold (the draws are
    # uniform, so about `hidden` of them lie below hidden/n), then the few excess or missing
    # points next to the threshold are fixed up with a small top-k.
    hide = u < (hidden.to(u.dtype) / n)[:, None, None]
    excess = torch.count_nonzero(hide, dim=-1) - hidden[:, None]  # > 0: too many hidden, < 0: too few
    k_over, k_under = int(excess.max().clamp(min=0)), int((-excess).max().clamp(min=0))
    if k_over:  # reveal the largest hidden draws
        idx = torch.where(hide, u, -math.inf).topk(k_over, dim=-1).indices
        first = torch.arange(k_over, device=gdev) < excess[..., None]
        hide.scatter_(-1, idx, hide.gather(-1, idx) & ~first)
    if k_under:  # hide the smallest visible draws
        idx = torch.where(hide, math.inf, u).topk(k_under, dim=-1, largest=False).indices
        first = torch.arange(k_under, device=gdev) < -excess[..., None]
        hide.scatter_(-1, idx, hide.gather(-1, idx) | first)
    keep = hide.logical_not_()
    return keep.view(batch, channels, n_lat, n_lon).to(device if device is not None else gdev)


def _crop_offsets(b: int, n_lat: int, n_lon: int, size: tuple[int, int], generator: torch.Generator,
                  device: torch.device) -> tuple[Tensor, Tensor]:
    h, w = size
    if h > n_lat or w > n_lon:
        raise ValueError(f"crop {size} is larger than the field {(n_lat, n_lon)}")
    top = torch.randint(0, n_lat - h + 1, (b,), generator=generator, device=generator.device).to(device)
    left = torch.randint(0, n_lon - w + 1, (b,), generator=generator, device=generator.device).to(device)
    return top, left


def random_crop(x: Tensor, size: tuple[int, int], generator: torch.Generator) -> Tensor:
    """Per-sample random ``size = (h, w)`` window of ``x``, one offset per sample for all channels.

    Offsets are drawn as ``top`` for every sample, then ``left`` for every sample, each uniform
    over all windows that fit (like torchvision's ``RandomCrop``, batched with gathers).
    """
    top, left = _crop_offsets(x.shape[0], *x.shape[2:], size, generator, x.device)
    return _crop_at(x, top, left, size)


def _crop_at(x: Tensor, top: Tensor, left: Tensor, size: tuple[int, int]) -> Tensor:
    """Each sample's ``size = (h, w)`` window of ``x`` from (``top``, ``left``)."""
    b, c, _, n_lon = x.shape
    h, w = size
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(b, c, h, n_lon)
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(b, c, h, w)
    return x.gather(2, rows).gather(3, cols)


def _draw_shift(b: int, max_shift: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randint(0, max_shift + 1, (b,), generator=generator, device=generator.device).to(device)


def _shift_index(n_lon: int, shift: Tensor, periodic: bool) -> Tensor:
    """Source column of every output column after an eastward shift: wrapped round the globe, or (a regional
    box) clamped to the west edge, whose column then fills the cells the shift opens."""
    cols = torch.arange(n_lon, device=shift.device) - shift[..., None]
    return cols % n_lon if periodic else cols.clamp(min=0)


def _roll(x: Tensor, shift: Tensor, periodic: bool = True) -> Tensor:
    b, c, n_lat, n_lon = x.shape
    cols = _shift_index(n_lon, shift, periodic)
    return x.gather(3, cols[:, None, None, :].expand(b, c, n_lat, n_lon))


def periodic_shift(x: Tensor, max_shift: int, generator: torch.Generator, periodic: bool = True) -> Tensor:
    """Roll each sample eastwards by its own ``s ~ U{0..max_shift}`` longitude cells.

    Drawing from ``0..max_shift`` (not ``-max_shift..max_shift``) mirrors the crop offsets of the
    paper mode, which run from 0 to the maximum: two independently shifted views are then at most
    ``max_shift`` cells apart, as two paper crops are. With ``periodic=False`` (a regional box) the
    fields shift without wrapping: the west edge column fills the ``s`` opened cells.
    """
    return _roll(x, _draw_shift(x.shape[0], max_shift, generator, x.device), periodic)


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    # Bicubic without clamping (reference behaviour): may overshoot near sharp gradients.
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def _nearest_odd(value: float) -> int:
    return 2 * math.floor(value / 2) + 1


# Native mode smooths (and rolls) with dense per-axis matrices up to this many cells per axis:
# a matmul costs O(n) per cell but runs at BLAS speed, which beats the memory-bound shifted-slice
# passes of `box_smooth` on small grids; beyond it `box_smooth` (O(kernel) per cell) is used.
_DENSE_MAX = 256


def _resize_matrix(n_in: int, n_out: int) -> Tensor:
    """``(n_out, n_in)`` float64 matrix of ``_resize`` along one axis (bicubic is separable)."""
    eye = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, n_in, 1)
    return _resize(eye, (n_out, 1))[:, 0, :, 0].T.contiguous()


def _box_matrix(n: int, kernel: int, axis: str, periodic: bool = True) -> Tensor:
    """``(n, n)`` float64 matrix of ``box_smooth`` along latitude (replicated edges) or longitude (circular,
    or replicated edges when not ``periodic``)."""
    eye = torch.eye(n, dtype=torch.float64)
    if axis == "lat":  # constant along longitude (wide enough for the circular padding): only latitude mixes
        return box_smooth(eye[:, None, :, None].expand(n, 1, n, kernel), kernel)[:, 0, :, 0].T.contiguous()
    return box_smooth(eye[:, None, None, :], kernel, periodic)[:, 0, 0, :].T.contiguous()


def _left(x: Tensor, m: Tensor) -> Tensor:
    """``m @ x`` over latitude; ``m`` is ``(h_out, n_lat)`` shared or ``(batch, h_out, n_lat)`` per sample."""
    if m.dim() == 3:
        return torch.matmul(m[:, None], x)
    b, c, n_lat, n_lon = x.shape  # a shared matrix: a stride-0 batch avoids matmul's copy of it per image
    out = torch.bmm(m.expand(b * c, *m.shape), x.reshape(b * c, n_lat, n_lon))
    return out.view(b, c, m.shape[0], n_lon)


def _right(x: Tensor, m: Tensor) -> Tensor:
    """``x @ m^T`` over longitude; ``m`` is ``(w_out, n_lon)`` shared or ``(batch, w_out, n_lon)`` per sample."""
    if m.dim() == 2:
        return torch.matmul(x, m.T)
    b, c, n_lat, n_lon = x.shape
    return torch.bmm(x.reshape(b, c * n_lat, n_lon), m.transpose(1, 2)).view(b, c, n_lat, m.shape[1])


def _apply_pair(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``rows @ x @ cols^T`` per sample and channel, in the cheaper order of the two matmuls."""
    n_lat, n_lon = x.shape[-2:]
    h, w = rows.shape[-2], cols.shape[-2]
    if n_lat * w * (n_lon + h) <= h * n_lon * (n_lat + w):
        return _left(_right(x, cols), rows)
    return _right(_left(x, rows), cols)


class Resampling:
    """The linear resampling of one grid into the encoder's input and the contrastive views, in one of the two
    modes: what :class:`Augmenter` does to a field besides hiding points.

    ``input_hw`` is the encoder's input size (paper: the crop size, 64x32 -> 144x72; native: the
    grid). In native mode the shift is ``round(n_lon * (resize - crop) / resize)`` cells (6 for 64
    longitudes: the paper's 16-pixel crop range is 6.4 native cells) and the box filter is the
    nearest odd size to ``smooth_kernel / crop_factor`` (5 / 2.25 = 2.2 native cells -> 3), so it
    stays centred; kernel 1 stays 1.

    All the resampling is linear and separable per axis, so it runs as matrix products: in paper
    mode the resize, crop and smoothing of a view are ``A[top] @ x @ B[left]^T`` with
    ``A[top] = S_lat @ R_lat[top:top + h]`` (box smoothing after the cropped rows of the resize)
    precomputed for every crop offset, likewise ``B`` for longitude; the aligned target and the
    encoder input are matrix pairs too. In native mode the roll and the box filter are
    ``S_lat @ x @ (S_lon @ P_shift)^T``. The matrices are built once (in float64, by applying
    ``_resize`` and ``box_smooth`` to identities, so edges are handled exactly as those functions
    do) and cached per device and dtype; results equal the step-by-step composition up to float
    rounding, with the same random draws.
    """

    def __init__(self, cfg: AugmentConfig, n_lat: int, n_lon: int, periodic: bool = True):
        self.cfg = cfg
        self.native_hw = (n_lat, n_lon)
        self.periodic = periodic
        if cfg.mode == "paper":
            self.input_hw = (round(n_lat * cfg.crop_factor), round(n_lon * cfg.crop_factor))
            self.resize_hw = (round(n_lat * cfg.resize_factor), round(n_lon * cfg.resize_factor))
            self.kernel = cfg.smooth_kernel
            self.max_shift = 0
        else:
            self.input_hw = self.resize_hw = self.native_hw
            self.kernel = max(1, _nearest_odd(cfg.smooth_kernel / cfg.crop_factor))
            self.max_shift = round(n_lon * (cfg.resize_factor - cfg.crop_factor) / cfg.resize_factor)
        if not periodic:
            how = (f"views shift eastwards by 0..{self.max_shift} cells with the west edge column repeated, "
                   "not rolled," if cfg.mode == "native" else "crops do not wrap, and")
            log.info("regional %dx%d grid (longitudes do not wrap round the globe): augment.mode=%s %s box smoothing "
                     "repeats the edge cells", n_lon, n_lat, cfg.mode, how)
        self._base: dict[str, Tensor] | None = None
        self._cache: dict[tuple[torch.device, torch.dtype], dict[str, Tensor]] = {}

    def _dense_native(self) -> bool:
        return self.kernel > 1 and max(self.native_hw) <= _DENSE_MAX

    def _build(self) -> dict[str, Tensor]:
        (n_lat, n_lon), (h, w), k = self.native_hw, self.input_hw, self.kernel
        if self.cfg.mode == "paper":
            big_h, big_w = self.resize_hw
            r_lat, r_lon = _resize_matrix(n_lat, big_h), _resize_matrix(n_lon, big_w)
            s_lat, s_lon = _box_matrix(h, k, "lat"), _box_matrix(w, k, "lon", self.periodic)
            d_lat, d_lon = _resize_matrix(h, n_lat), _resize_matrix(w, n_lon)
            tops, lefts = range(big_h - h + 1), range(big_w - w + 1)
            return {"input_rows": _resize_matrix(n_lat, h), "input_cols": _resize_matrix(n_lon, w),
                    "view_rows": torch.stack([s_lat @ r_lat[t:t + h] for t in tops]),
                    "view_cols": torch.stack([s_lon @ r_lon[j:j + w] for j in lefts]),
                    "target_rows": torch.stack([d_lat @ r_lat[t:t + h] for t in tops]),
                    "target_cols": torch.stack([d_lon @ r_lon[j:j + w] for j in lefts])}
        if not self._dense_native():
            return {}
        eye = torch.eye(n_lon, dtype=torch.float64)
        s_lon = _box_matrix(n_lon, k, "lon", self.periodic)
        shifts = torch.arange(self.max_shift + 1)  # eastwards by s: out[j] = x[j - s] (wrapped, or clamped to 0)
        return {"smooth_rows": _box_matrix(n_lat, k, "lat"),
                "shift_cols": torch.stack([s_lon @ eye[idx] for idx in _shift_index(n_lon, shifts, self.periodic)])}

    def _matrices(self, x: Tensor) -> dict[str, Tensor]:
        key = (x.device, x.dtype)
        if key not in self._cache:
            if self._base is None:
                self._base = self._build()
            self._cache[key] = {name: m.to(device=x.device, dtype=x.dtype) for name, m in self._base.items()}
        return self._cache[key]

    def encoder_input(self, x: Tensor) -> Tensor:
        """Un-augmented encoder input (downstream and reconstruction inputs): resized, no crop/smoothing."""
        if tuple(x.shape[-2:]) == self.input_hw:
            return x
        if tuple(x.shape[-2:]) != self.native_hw:
            return _resize(x, self.input_hw)
        m = self._matrices(x)
        return _apply_pair(x, m["input_rows"], m["input_cols"])

    def _geometry(self, x: Tensor, generator: torch.Generator,
                  with_target: bool) -> tuple[Callable[[Tensor], Tensor], Tensor | None]:
        """Draws a view's crop or shift -> (the view's resampling of any tensor shaped as ``x``, the aligned
        target of ``x`` if asked)."""
        b = x.shape[0]
        if self.cfg.mode == "paper" and tuple(x.shape[-2:]) != self.native_hw:  # not the grid the matrices are for
            top, left = _crop_offsets(b, *self.resize_hw, self.input_hw, generator, x.device)

            def cropped(t: Tensor) -> Tensor:
                return _crop_at(_resize(t, self.resize_hw), top, left, self.input_hw)

            target = _resize(cropped(x), self.native_hw) if with_target else None
            return lambda t: box_smooth(cropped(t), self.kernel, self.periodic), target
        if self.cfg.mode == "paper":  # one crop for view and target; resize + crop + smooth as one matrix pair
            top, left = _crop_offsets(b, *self.resize_hw, self.input_hw, generator, x.device)
            m = self._matrices(x)
            target = _apply_pair(x, m["target_rows"][top], m["target_cols"][left]) if with_target else None
            return lambda t: _apply_pair(t, m["view_rows"][top], m["view_cols"][left]), target
        shift = _draw_shift(b, self.max_shift, generator, x.device)
        target = _roll(x, shift, self.periodic) if with_target else None
        if self._dense_native() and tuple(x.shape[-2:]) == self.native_hw:  # roll + box filter: one matrix pair
            m = self._matrices(x)
            return lambda t: _apply_pair(t, m["smooth_rows"], m["shift_cols"][shift]), target
        return lambda t: box_smooth(_roll(t, shift, self.periodic), self.kernel, self.periodic), target


class Augmenter(Resampling):
    """Builds the encoder inputs and contrastive views of a batch: the :class:`Resampling` of the fields and
    their observation masks, with the points it hides at random (or where a fixed mask says)."""

    def keep_mask(self, x: Tensor, generator: torch.Generator | None, low: float, high: float,
                  keep: Tensor | None = None) -> Tensor:
        """The observation mask (True = observed) of ``x`` on its grid, as ``(1 or batch, 1 or channels, n_lat,
        n_lon)``: drawn with ratio ``U[low, high)`` per sample or, given a fixed ``keep`` ((n_lat, n_lon) or
        (batch, [channel,] n_lat, n_lon), on the native grid), that one checked."""
        if keep is not None:
            if keep.dtype != torch.bool or tuple(keep.shape[-2:]) != self.native_hw or keep.dim() not in (2, 3, 4):
                raise DataError(f"observation mask must be bool of shape (n_lat, n_lon) = {self.native_hw} "
                                f"or (batch, [channel,] n_lat, n_lon); got {keep.dtype} {tuple(keep.shape)}")
            keep = keep[None, None] if keep.dim() == 2 else keep[:, None] if keep.dim() == 3 else keep
            return keep.to(x.device)
        b, c, n_lat, n_lon = x.shape
        channels = c if self.cfg.mask_per_channel else 1
        return random_keep_mask(b, n_lat, n_lon, low, high, generator, channels, x.device)

    def _hide(self, x: Tensor, generator: torch.Generator | None, low: float, high: float,
              keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x`` with its hidden points set to 0 (the networks' input convention), and its observation mask."""
        keep = self.keep_mask(x, generator, low, high, keep)
        return x.masked_fill(~keep, 0.0), keep

    def mask(self, x: Tensor, generator: torch.Generator | None, low: float, high: float,
             keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sparse encoder input and its observation mask (True = observed) at ``input_hw``: hide points with
        ratio ``U[low, high)`` (or where ``keep`` is False), then resize.

        ``mask_on='native'`` hides native grid points before resizing, so a hidden value cannot
        leak into the input through interpolation, and the mask is resized with the field (an input value
        is observed when an observed native value enters it); ``'upsampled'`` (the reference) masks the
        resized input. A fixed ``keep`` (True = observed, e.g. station locations) is always on the
        native grid and replaces the random mask.
        """
        if keep is not None or self.cfg.mask_on == "native":
            hidden, seen = self._hide(x, generator, low, high, keep)
            return self.encoder_input(hidden), follow(seen, self.encoder_input, x.dtype)
        return self._hide(self.encoder_input(x), generator, low, high)

    def view(self, x: Tensor, generator: torch.Generator, masked: bool,
             with_target: bool = False) -> tuple[Tensor, Tensor | None] | tuple[Tensor, Tensor | None, Tensor]:
        """Contrastive view of ``x`` at ``input_hw`` and its observation mask (None: complete), masked with
        ratio ``U[mask_low, mask_high)`` if asked.

        Paper mode: (native mask), resize to ``resize_hw``, random crop to ``input_hw``, box smooth,
        (upsampled mask). Native mode: (mask), longitude shift (periodic on a global grid, with the
        edge column repeated on a regional box), box smooth, (mask).
        ``mask_on`` picks which of the bracketed masks applies: 'native' hides points before any
        interpolation or smoothing, and the mask follows the same resampling (a view value is observed
        when an observed native value enters it); 'upsampled' masks the finished view as the reference does.

        ``with_target`` also returns the aligned stage-2 target at the native grid: the clean
        (unmasked, unsmoothed) field under the same crop or shift, resized back to the native
        grid in paper mode (an exact roll in native mode). The reference reconstructs the
        uncropped field instead, which the decoder cannot know how to align with the view.
        The random draws do not depend on ``with_target``: the view is the same either way.
        """
        cfg = self.cfg
        view, keep = x, None
        if masked and cfg.mask_on == "native":
            view, keep = self._hide(x, generator, cfg.mask_low, cfg.mask_high)
        geometry, target = self._geometry(x, generator, with_target)
        view = geometry(view)
        keep = None if keep is None else follow(keep, geometry, x.dtype)
        if masked and cfg.mask_on == "upsampled":
            view, keep = self._hide(view, generator, cfg.mask_low, cfg.mask_high)
        return (view, keep, target) if with_target else (view, keep)


def follow(keep: Tensor, resample: Callable[[Tensor], Tensor], dtype: torch.dtype) -> Tensor:
    """The observation mask of a field resampled by the linear ``resample``: a value is observed when an
    observed value enters it (a non-zero resample of the mask as 0/1 values)."""
    return resample(keep.to(dtype)) != 0


def observed_cat(batches: Sequence[tuple[Fields, Fields | None]]) -> tuple[Fields, Fields | None]:
    """(fields, observation mask or None) batches -> one batch: the fields concatenated, and their masks, a
    complete batch's as all True (None when every batch is complete)."""
    fields = grids.cat([x for x, _ in batches])
    if all(keep is None for _, keep in batches):
        return fields, None

    def full(x: Fields, keep: Fields | None) -> list[Tensor]:  # one batch's masks per grid, at its fields' shape
        parts = grids.as_list(x)
        keeps = [None] * len(parts) if keep is None else grids.as_list(keep)
        return [torch.ones_like(p, dtype=torch.bool) if k is None else k.expand(p.shape) for p, k in zip(parts, keeps)]

    keeps = [torch.cat(parts) for parts in zip(*(full(x, keep) for x, keep in batches))]
    return fields, keeps if isinstance(fields, list) else keeps[0]


class MultiGridAugmenter:
    """The :class:`Augmenter` of a mixed store: one per grid, each applied to its grid's tensor.

    Inputs and outputs are lists with one tensor per grid. The grids draw their crops, shifts and
    masks one after the other from the same generator, so they are independent between grids
    (a variable's view is still one consistent crop of that variable). Fixed observation masks
    are defined on one grid and are refused here.
    """

    def __init__(self, cfg: AugmentConfig, layout: list[Grid]):
        self.parts = [Augmenter(cfg, grid.n_lat, grid.n_lon, grid.periodic) for grid in layout]

    def encoder_input(self, x: list[Tensor]) -> list[Tensor]:
        return [aug.encoder_input(part) for aug, part in zip(self.parts, x)]

    @staticmethod
    def _refuse_fixed(keep: Tensor | None) -> None:
        if keep is not None:
            raise DataError("a fixed observation mask lies on one grid, and this model's variables are on "
                            "several; use a random mask ratio instead")

    def mask(self, x: list[Tensor], generator: torch.Generator, low: float, high: float,
             keep: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        self._refuse_fixed(keep)
        out = [aug.mask(part, generator, low, high) for aug, part in zip(self.parts, x)]
        return [sparse for sparse, _ in out], [seen for _, seen in out]

    def view(self, x: list[Tensor], generator: torch.Generator, masked: bool,
             with_target: bool = False) -> tuple[list, list | None] | tuple[list, list | None, list]:
        out = [aug.view(part, generator, masked, with_target) for aug, part in zip(self.parts, x)]
        views, keeps = [o[0] for o in out], [o[1] for o in out] if masked else None
        return (views, keeps, [o[2] for o in out]) if with_target else (views, keeps)


def build_augmenter(cfg: AugmentConfig, layout: list[Grid]) -> Augmenter | MultiGridAugmenter:
    """The augmenter for data on ``layout`` (a store's grids)."""
    if len(layout) == 1:
        return Augmenter(cfg, layout[0].n_lat, layout[0].n_lon, layout[0].periodic)
    return MultiGridAugmenter(cfg, layout)
