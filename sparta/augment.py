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

import torch
import torch.nn.functional as F
from torch import Tensor

from sparta.config import AugmentConfig
from sparta.data.store import DataError
from sparta.grids import Grid

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
    b, c, n_lat, n_lon = x.shape
    h, w = size
    top, left = _crop_offsets(b, n_lat, n_lon, size, generator, x.device)
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


class Augmenter:
    """Builds the encoder inputs and contrastive views of a batch, in one of the two modes.

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

    def _random_mask(self, x: Tensor, generator: torch.Generator, low: float, high: float) -> Tensor:
        return x.masked_fill(~self.keep_mask(x, generator, low, high), 0.0)

    def _fixed_mask(self, x: Tensor, keep: Tensor) -> Tensor:
        return x.masked_fill(~self.keep_mask(x, None, 0.0, 0.0, keep=keep), 0.0)

    def keep_mask(self, x: Tensor, generator: torch.Generator | None, low: float, high: float,
                  keep: Tensor | None = None) -> Tensor:
        """The observation mask (True = observed) that :meth:`mask` applies to ``x`` on its grid.

        Random: ``(batch, 1 or channels, n_lat, n_lon)``, the very draws ``mask`` makes. Fixed
        ``keep``: checked, as ``(1 or batch, 1 or channels, n_lat, n_lon)``. Models that take the
        mask themselves (the EOF baseline fits only the observed values) get it from here.
        """
        if keep is not None:
            if keep.dtype != torch.bool or tuple(keep.shape[-2:]) != self.native_hw or keep.dim() not in (2, 3, 4):
                raise DataError(f"observation mask must be bool of shape (n_lat, n_lon) = {self.native_hw} "
                                f"or (batch, [channel,] n_lat, n_lon); got {keep.dtype} {tuple(keep.shape)}")
            keep = keep[None, None] if keep.dim() == 2 else keep[:, None] if keep.dim() == 3 else keep
            return keep.to(x.device)
        b, c, n_lat, n_lon = x.shape
        channels = c if self.cfg.mask_per_channel else 1
        return random_keep_mask(b, n_lat, n_lon, low, high, generator, channels, x.device)

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
        (upsampled mask). Native mode: (mask), longitude shift (periodic on a global grid, with the
        edge column repeated on a regional box), box smooth, (mask).
        ``mask_on`` picks which of the bracketed masks applies: 'native' hides points before any
        interpolation or smoothing; 'upsampled' masks the finished view as the reference does.

        ``with_target`` also returns the aligned stage-2 target at the native grid: the clean
        (unmasked, unsmoothed) field under the same crop or shift, resized back to the native
        grid in paper mode (an exact roll in native mode). The reference reconstructs the
        uncropped field instead, which the decoder cannot know how to align with the view.
        The random draws do not depend on ``with_target``: the view is the same either way.
        """
        cfg = self.cfg
        b = x.shape[0]
        view, target = x, None
        if masked and cfg.mask_on == "native":
            view = self._random_mask(view, generator, cfg.mask_low, cfg.mask_high)
        if cfg.mode == "paper" and tuple(x.shape[-2:]) != self.native_hw:  # not the grid the matrices are for
            c = x.shape[1]
            stack = torch.cat([view, x], dim=1) if with_target else view
            stack = random_crop(_resize(stack, self.resize_hw), self.input_hw, generator)
            view = box_smooth(stack[:, :c], self.kernel, self.periodic)
            target = _resize(stack[:, c:], self.native_hw) if with_target else None
        elif cfg.mode == "paper":  # one crop for view and target; resize + crop + smooth as one matrix pair
            top, left = _crop_offsets(b, *self.resize_hw, self.input_hw, generator, x.device)
            m = self._matrices(x)
            view = _apply_pair(view, m["view_rows"][top], m["view_cols"][left])
            if with_target:
                target = _apply_pair(x, m["target_rows"][top], m["target_cols"][left])
        else:
            shift = _draw_shift(b, self.max_shift, generator, x.device)
            if with_target:
                target = _roll(x, shift, self.periodic)
            if self._dense_native() and tuple(x.shape[-2:]) == self.native_hw:  # roll + box filter: one matrix pair
                m = self._matrices(x)
                view = _apply_pair(view, m["smooth_rows"], m["shift_cols"][shift])
            else:
                view = box_smooth(_roll(view, shift, self.periodic), self.kernel, self.periodic)
        if masked and cfg.mask_on == "upsampled":
            view = self._random_mask(view, generator, cfg.mask_low, cfg.mask_high)
        if not with_target:
            return view
        return view, target


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
             keep: Tensor | None = None) -> list[Tensor]:
        self._refuse_fixed(keep)
        return [aug.mask(part, generator, low, high) for aug, part in zip(self.parts, x)]

    def keep_mask(self, x: list[Tensor], generator: torch.Generator, low: float, high: float,
                  keep: Tensor | None = None) -> list[Tensor]:
        """One random observation mask per grid, the draws :meth:`mask` makes."""
        self._refuse_fixed(keep)
        return [aug.keep_mask(part, generator, low, high) for aug, part in zip(self.parts, x)]

    def view(self, x: list[Tensor], generator: torch.Generator, masked: bool,
             with_target: bool = False) -> list[Tensor] | tuple[list[Tensor], list[Tensor]]:
        out = [aug.view(part, generator, masked, with_target) for aug, part in zip(self.parts, x)]
        if not with_target:
            return out
        return [view for view, _ in out], [target for _, target in out]


def build_augmenter(cfg: AugmentConfig, layout: list[Grid]) -> Augmenter | MultiGridAugmenter:
    """The augmenter for data on ``layout`` (a store's grids)."""
    if len(layout) == 1:
        return Augmenter(cfg, layout[0].n_lat, layout[0].n_lon, layout[0].periodic)
    return MultiGridAugmenter(cfg, layout)
