"""A trained run in use: the one place that picks the device, rebuilds a model from a checkpoint, encodes
fields (complete or sparse) and decodes embeddings back to physical fields. Evaluation, ``sparta
embed`` and ``sparta decode`` all go through it, and it is the Python API::

    from sparta import inference

    model = inference.load("runs/quick/sparta")           # best checkpoint, frozen, on the best device
    h = model.embed_dataset(ds, mask=stations)            # xarray.DataArray (time, feature)
    fields = model.decode_dataset(h)                      # xarray.Dataset, one (time, lat, lon) per channel

``ds`` is an xarray Dataset of daily fields in the WeatherBench2 (or CDS) schema with the run's
variables on its grid; units are read and converted as ``sparta data prepare`` does.
:class:`FrozenModel` also works on arrays: :meth:`FrozenModel.encode` takes z-scored
``(N, C, H, W)`` fields (one array per grid when the variables are on several) and
:meth:`FrozenModel.decode` returns physical ones.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from sparta import grids
from sparta.augment import Augmenter, MultiGridAugmenter, build_augmenter
from sparta.checkpoint import CheckpointError
from sparta.config import Config
from sparta.data.store import DataError, Store, check_matches
from sparta.data.variables import parse_variables
from sparta.grids import Fields, Grid
from sparta.models.build import load_trained, resolve_device
from sparta.seeding import generator

log = logging.getLogger(__name__)

BATCH_SIZE = 256
CHECKPOINTS = ("best", "last")


def weights_digest(model: torch.nn.Module) -> str:
    """Short hash of a model's weights: tells two runs (or two checkpoints) of one config apart."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def decode_fields(model: torch.nn.Module, h: Tensor, mean: np.ndarray, std: np.ndarray, device: torch.device,
                  batch_size: int = BATCH_SIZE) -> list[Tensor]:
    """Embeddings (N, D) -> physical fields (N, C, H, W) on CPU, one per grid of ``model.layout``, batch by batch.

    ``mean``/``std``: every channel's z-score statistics, in the layout's channel order.
    """
    out = [grids.each(lambda part: part.float().cpu(), model.decode(chunk.to(device))) for chunk in h.split(batch_size)]
    pieces = zip(grids.per_grid(np.asarray(std), model.layout), grids.per_grid(np.asarray(mean), model.layout))
    return [x * x.new_tensor(scale[:, None, None]) + x.new_tensor(shift[:, None, None])
            for x, (scale, shift) in zip(grids.as_list(grids.cat(out)), pieces)]


def channel_units(variables: list[str], channels: list[str], known: dict[str, str] | None) -> list[str]:
    """Each channel's CF units: as recorded (store or embeddings file), else SPARTA's unit of the variable
    (every store holds SPARTA's units, see sparta.data.units), else 'unknown'."""
    from sparta.data.units import UNITS

    out = []
    for spec, channel in zip(variables, channels):
        name = spec.partition("@")[0]
        out.append((known or {}).get(channel) or UNITS.get(name, ("unknown",))[0])
    return out


def grid_dims(grid: Grid, layout: list[Grid]) -> tuple[str, str]:
    """Names of a grid's coordinates in embeddings and decoded files: lat/lon, or lat_LONxLAT/lon_LONxLAT
    when the variables are on several grids."""
    if len(layout) == 1:
        return "lat", "lon"
    return f"lat_{grid.name}", f"lon_{grid.name}"


def fields_dataset(layout: list[Grid], fields: list[Tensor], times: np.ndarray, variables: list[str],
                   channels: list[str], units: list[str], coords: dict[str, np.ndarray],
                   aggregation: str | None = None, attrs: dict | None = None) -> xr.Dataset:
    """Decoded fields (one (N, C, H, W) per grid) as a Dataset: one ``(time, lat, lon)`` variable per channel
    with its ``long_name`` (the variable) and ``units``; ``coords`` holds each grid's coordinates under the
    names of :func:`grid_dims`."""
    specs, unit_of = dict(zip(channels, variables)), dict(zip(channels, units))
    data_vars, out_coords = {}, {"time": times}
    for grid, values in zip(layout, fields):
        lat_dim, lon_dim = grid_dims(grid, layout)
        out_coords.update({lat_dim: coords[lat_dim], lon_dim: coords[lon_dim]})
        for c, name in enumerate(grid.channels):
            var_attrs = {"long_name": specs[name], "units": unit_of[name]}
            if aggregation and aggregation.startswith(("daily mean", "instantaneous")):
                var_attrs["cell_methods"] = "time: mean" if aggregation.startswith("daily mean") else "time: point"
            data_vars[name] = (("time", lat_dim, lon_dim), values[:, c].numpy(), var_attrs)
    return xr.Dataset(data_vars, coords=out_coords, attrs=attrs or {})


MASK_CHANNEL_DIMS = ("channel", "variable")  # the dimension of a per-channel mask, holding channel names (z850)


def mask_values(mask: xr.DataArray, lat: np.ndarray, lon: np.ndarray, what: str, grid: str,
                channels: list[str]) -> np.ndarray:
    """A (lat, lon) observation mask, or one per channel ((channel or variable, lat, lon), named as the store's
    channels, e.g. ``t2m``, ``z850``), as an array on the grid ``lat``/``lon`` (channels in ``channels``' order):
    ``latitude``/``longitude`` are accepted, latitude is made ascending and longitudes are read in the grid's
    frame (-180..180 or 0..360); coordinates it carries must match the grid's within 1e-3 degrees."""
    from sparta.domain import to_frame

    mask = grids.rename_lat_lon(mask)
    extra = [str(d) for d in mask.dims if d not in ("lat", "lon")]
    if not {"lat", "lon"} <= set(mask.dims) or len(extra) > 1 or (extra and extra[0] not in MASK_CHANNEL_DIMS):
        raise DataError(f"{what} must be over (lat, lon) or (channel, lat, lon), it is over "
                        f"{tuple(map(str, mask.dims))}")
    if extra:
        names = [str(n) for n in mask[extra[0]].values] if extra[0] in mask.coords else []
        if sorted(names) != sorted(channels):
            raise DataError(f"{what} names the channels {names or 'nothing'} along '{extra[0]}'; "
                            f"it needs exactly the model's: {', '.join(channels)}")
        mask = mask.sel({extra[0]: channels})
    mask = mask.transpose(*extra, "lat", "lon")
    if mask.shape[-2:] != (len(lat), len(lon)):
        raise DataError(f"{what} has shape {mask.shape}, expected (n_lat, n_lon) = {(len(lat), len(lon))} "
                        f"for the grid {grid}")
    if "lon" in mask.coords:
        mask = mask.assign_coords(lon=to_frame(mask["lon"].values, float(lon[0]))).sortby("lon")  # the grid's frame
    if "lat" in mask.coords:
        mask = mask.sortby("lat")  # conventions: latitude ascending
    for name, want in (("lat", lat), ("lon", lon)):
        if name in mask.coords:
            gap = float(np.abs(mask[name].values - want).max())
            if gap > 1e-3:
                raise DataError(f"{what} {name} coordinates do not match the grid {grid} "
                                f"(off by up to {gap:.4g} degrees); regrid the mask to the grid's coordinates")
    return mask.values


def check_keep(values: np.ndarray, what: str, shape: tuple[int, int], grid: str, channels: int) -> Tensor:
    """An observation mask array checked (shape (lat, lon) or (channel, lat, lon), boolean or 0/1, something
    observed) -> bool tensor (lat, lon), or (1, channel, lat, lon) for one mask per channel."""
    values = np.asarray(values)
    if values.shape not in (shape, (channels, *shape)):
        raise DataError(f"{what} has shape {values.shape}, expected (n_lat, n_lon) = {shape} or (channel, n_lat, "
                        f"n_lon) = {(channels, *shape)} for the grid {grid}")
    if values.dtype != np.bool_:
        if values.dtype.kind not in "biuf" or not np.isin(values, (0, 1)).all():
            raise DataError(f"{what} has non-boolean values ({values.dtype}); use True/False or 0/1 "
                            "(True = observed)")
        values = values.astype(bool)
    if not values.any():
        raise DataError(f"{what} observes no grid point (all False); True marks observed points")
    keep = torch.from_numpy(np.ascontiguousarray(values))
    return keep if keep.dim() == 2 else keep[None]


@dataclass
class ArrayModel:
    """A trained encoder/decoder with the data conventions it was trained with, on arrays.

    ``store``: the prepared data it is used on (evaluation, ``sparta embed``), whose z-score statistics are the
    model's; without one (:func:`load`), the checkpoint's statistics are used.
    """

    model: torch.nn.Module
    cfg: Config
    store: Store | None
    augmenter: Augmenter | MultiGridAugmenter
    device: torch.device
    batch_size: int = BATCH_SIZE
    state: dict = field(default_factory=dict, repr=False)
    path: Path | None = None

    @property
    def layout(self) -> list[Grid]:
        return self.model.layout

    @property
    def variables(self) -> list[str]:
        return list(self.store.variables if self.store is not None else self.state["variables"])

    @property
    def channels(self) -> list[str]:
        return list(self.store.channels if self.store is not None else self.state["channels"])

    @property
    def mean(self) -> np.ndarray:
        return self.store.mean if self.store is not None else self.state["mean"].numpy()

    @property
    def std(self) -> np.ndarray:
        return self.store.std if self.store is not None else self.state["std"].numpy()

    @torch.no_grad()
    def encode(self, fields: Fields, mask_ratio: float | tuple[float, float] | None = None, seed: int = 0,
               keep: Tensor | None = None) -> Tensor:
        """Normalised fields (N, C, H, W), or one such array per grid, -> embeddings h (N, D) on CPU.

        ``mask_ratio``: the fraction of points hidden, fixed or a ``(low, high)`` range drawn per sample, or None
        (complete fields), as in :meth:`FrozenModel.embed_dataset`; ``keep`` is a fixed observation mask that
        replaces the random one: (H, W) or (1, C, H, W) for every day, or (N, C, H, W) one per day and channel.
        The model gets the encoder input (hidden points 0) and its observation mask.
        """
        low, high = (mask_ratio, mask_ratio) if isinstance(mask_ratio, float) else (mask_ratio or (0.0, 0.0))
        gen = generator(seed)
        out = []
        for start in range(0, grids.length(fields), self.batch_size):
            x = grids.each(lambda part: torch.as_tensor(np.asarray(part), device=self.device),
                           grids.take(fields, slice(start, start + self.batch_size)))
            per_day = keep is not None and keep.dim() == 4 and len(keep) > 1
            seen = keep[start:start + self.batch_size] if per_day else keep
            if mask_ratio is None and keep is None:
                x, seen = self.augmenter.encoder_input(x), None
            else:
                x, seen = self.augmenter.mask(x, gen, low, high, keep=seen)
            out.append(self.model.encode(x, seen).float().cpu())
        return torch.cat(out)

    def decode(self, h: Tensor) -> Fields:
        """Embeddings (N, D) -> fields (N, C, H, W) (one per grid) in physical units, on CPU."""
        parts = decode_fields(self.model, h, self.mean, self.std, self.device, self.batch_size)
        return parts if len(parts) > 1 else parts[0]

    def normalise(self, x: Fields) -> Fields:
        """Physical (N, C, H, W) fields (one per grid) -> z-scored with the model's statistics."""
        stats = zip(grids.per_grid(self.mean, self.layout), grids.per_grid(self.std, self.layout))
        parts = [(part - mean[:, None, None]) / std[:, None, None]
                 for part, (mean, std) in zip(grids.as_list(x), stats)]
        return parts if len(parts) > 1 else parts[0]

    def coords(self) -> dict[str, np.ndarray]:
        """Every grid's coordinates, named as in :func:`grid_dims`."""
        from sparta.domain import Box, target_coords

        box = None if self.cfg.data.box is None else Box.parse(self.cfg.data.box)
        out = {}
        for grid in self.layout:
            for name, values in zip(grid_dims(grid, self.layout), target_coords(grid.name, box)):
                out[name] = values
        return out

    def identity(self) -> dict:
        """What names this model: run checkpoint, config and weights digests, method, fusion, preset."""
        return {"checkpoint": str(self.path) if self.path else "", "config_digest": self.cfg.digest(),
                "weights_digest": weights_digest(self.model), "method": self.cfg.method,
                "fusion": self.cfg.model.fusion, "preset": self.cfg.preset}


def check_masking(fixed_mask: bool, mask_ratio: float | None, names: tuple[str, str] = ("mask", "mask_ratio")
                  ) -> None:
    """One way of hiding points at most: a fixed mask or a ratio (``names``: how the caller calls them), the
    ratio in [0, 1)."""
    if fixed_mask and mask_ratio is not None:
        raise DataError(f"{names[0]} and {names[1]} are mutually exclusive; give one of them")
    if mask_ratio is not None and not 0.0 <= mask_ratio < 1.0:
        raise DataError(f"{names[1]} must be in [0, 1) (the fraction of hidden points), got {mask_ratio}")


class FrozenModel(ArrayModel):
    """A trained run in use, on arrays (:class:`ArrayModel`) and on xarray Datasets: the Python API."""

    def embed_dataset(self, ds: xr.Dataset, mask: xr.DataArray | np.ndarray | None = None,
                      mask_ratio: float | None = None, seed: int = 0, assume_units: bool = False) -> xr.DataArray:
        """Embeddings of every day of ``ds``: ``DataArray(time, feature)``.

        ``ds``: fields in the WeatherBench2 or CDS schema holding the run's variables on its grid (and box),
        or what :meth:`decode_dataset` returns; read, unit-converted and checked as by ``sparta data
        prepare`` (``assume_units`` accepts fields without units in ERA5's), sub-daily steps averaged to
        daily means as it does. NaN values are hidden points (``ds.where(observed)``). ``mask``: a fixed
        boolean (lat, lon) observation mask, True = observed (e.g. stations), the same every day;
        ``mask_ratio``: hide that fraction of points at random per day (drawn under ``seed``) instead.
        Without either, and without NaNs, the fields are complete.
        """
        from sparta.data.weatherbench import select_fields, to_daily
        from sparta.domain import Box

        check_masking(mask is not None, mask_ratio)
        box = None if self.cfg.data.box is None else Box.parse(self.cfg.data.box)
        spec = dict(zip(self.channels, self.variables))
        ds = self._as_schema(ds)
        parts, times = [], None
        for grid in self.layout:
            da = to_daily(select_fields(ds, [spec[c] for c in grid.channels], grid.name, box=box,
                                        assume_units=assume_units))
            if times is not None and not np.array_equal(times, da["time"].values):
                raise DataError("the dataset's variables on different grids cover different times")
            times = da["time"].values
            parts.append(np.asarray(da.values, dtype=np.float32))
        keep = self._observed(parts, mask_ratio)
        if mask is not None:
            if len(self.layout) > 1:
                raise DataError(f"a fixed mask gives observed points on one grid, but the model's variables are on "
                                f"several ({grids.layout_label(self.layout)}); use mask_ratio")
            coords = self.coords()
            grid = self.layout[0].name
            values = (mask_values(mask, coords["lat"], coords["lon"], "mask", grid, self.channels)
                      if isinstance(mask, xr.DataArray) else np.asarray(mask))
            fixed = check_keep(values, "mask", (len(coords["lat"]), len(coords["lon"])), grid, len(self.channels))
            keep = fixed if keep is None else keep & fixed
        fields = self.normalise(parts if len(parts) > 1 else parts[0])
        h = self.encode(fields, None if mask_ratio is None else float(mask_ratio), seed=seed, keep=keep)
        masking = "fixed" if keep is not None else "none" if mask_ratio is None else f"ratio {mask_ratio:g}"
        return xr.DataArray(h.numpy(), dims=("time", "feature"), name="embedding",
                            coords={"time": times, "feature": np.arange(h.shape[1])},
                            attrs={**self.identity(), "masking": masking})

    def _as_schema(self, ds: xr.Dataset) -> xr.Dataset:
        """``ds`` in the WeatherBench2 schema: channel-named variables (``z850``, as :meth:`decode_dataset` writes
        them) become their WeatherBench2 variable on a ``level`` coordinate; anything else passes unchanged."""
        named = [c for c in self.channels if c in ds.data_vars]
        if len(named) < len(self.channels):
            return ds
        by_name: dict[str, list[xr.DataArray]] = {}
        for channel, variable in zip(self.channels, parse_variables(self.variables)):
            da = ds[channel]
            by_name.setdefault(variable.name, []).append(
                da if variable.level is None else da.expand_dims(level=[variable.level]))
        return xr.Dataset({name: parts[0] if len(parts) == 1 else xr.concat(parts, "level")
                           for name, parts in by_name.items()})

    def _observed(self, parts: list[np.ndarray], mask_ratio: float | None) -> Tensor | None:
        """The observation mask (N, C, H, W) the NaNs of the physical ``parts`` give (None when there are none);
        the NaNs are set to the channel means, the value the encoders see at hidden points."""
        holes = [~np.isfinite(part) for part in parts]
        if not any(h.any() for h in holes):
            return None
        if len(parts) > 1:
            raise DataError(f"NaN values mark hidden points on one grid, but the model's variables are on several "
                            f"({grids.layout_label(self.layout)}); fill them, or use mask_ratio")
        if mask_ratio is not None:
            raise DataError("the dataset has NaN values, which mark hidden points; give mask_ratio only for "
                            "complete fields (or fill the NaNs)")
        if holes[0].all():
            raise DataError("every value of the dataset is NaN: nothing is observed")
        parts[0][holes[0]] = np.broadcast_to(self.mean[None, :, None, None], parts[0].shape)[holes[0]]
        return torch.from_numpy(~holes[0])

    def decode_dataset(self, h: xr.DataArray | np.ndarray | Tensor, times: np.ndarray | None = None) -> xr.Dataset:
        """Embeddings ``(time, feature)`` -> physical fields: one ``(time, lat, lon)`` variable per channel with
        its units, on the model's grid(s). ``times`` defaults to ``h``'s time coordinate (or 0..N-1)."""
        if isinstance(h, xr.DataArray):
            if times is None and "time" in h.coords:
                times = h["time"].values
            h = h.transpose("time", "feature").values
        h = torch.as_tensor(np.asarray(h, dtype=np.float32))
        if h.ndim != 2 or h.shape[1] != self.cfg.model.embed_dim:
            raise DataError(f"embeddings of shape {tuple(h.shape)}; the model expects (time, {self.cfg.model.embed_dim})")
        units = channel_units(self.variables, self.channels,
                              self.store.units if self.store is not None else None)
        return fields_dataset(self.layout, grids.as_list(self.decode(h)),
                              np.arange(len(h)) if times is None else times, self.variables, self.channels, units,
                              self.coords(), attrs={"title": "SPARTA decoded fields", **self.identity()})


def input_augmenter(cfg: Config, layout: list[Grid]) -> Augmenter | MultiGridAugmenter:
    """What builds the model's inputs: its training augmenter, or for a closed-form family (the EOF model, which
    reads the native grid) the same masks without resizing (``augment.mode=native``)."""
    from sparta.families import FAMILIES

    augment = cfg.augment.model_copy(update={"mode": "native"}) if FAMILIES[cfg.method].closed_form else cfg.augment
    return build_augmenter(augment, layout)


def load_frozen(checkpoint: Path, store: Store, device: str = "auto",
                expect_digest: str | None = None) -> FrozenModel:
    """The checkpoint's model, for use on ``store`` (same variables and grid; its statistics become the model's)."""
    dev = resolve_device(device)
    model, cfg, state = load_trained(checkpoint, dev, expect_digest)
    check_matches(store, state["variables"], state["grid"])
    if not np.allclose(store.mean, state["mean"].numpy(), rtol=1e-5):
        log.warning("store %s has other normalisation statistics than the model; using the model's", store.path)
        means, stds = (grids.per_grid(state[k].numpy(), store.layout) for k in ("mean", "std"))
        for part, mean, std in zip(store.parts, means, stds):
            part.mean, part.std = mean, std
    return FrozenModel(model, cfg, store, input_augmenter(cfg, store.layout), dev, state=state, path=Path(checkpoint))


def checkpoint_path(run_dir: str | Path, checkpoint: str = "best"):
    """(the run, the path of its ``best`` or ``last`` checkpoint)."""
    from sparta.runs import Run

    if checkpoint not in CHECKPOINTS:
        raise CheckpointError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got '{checkpoint}'")
    run = Run.open(run_dir)
    return run, run.require_best() if checkpoint == "best" else run.require_last()


def load(run_dir: str | Path, checkpoint: str = "best", device: str = "auto") -> FrozenModel:
    """A trained run's model, frozen, for use from Python (see the module docstring)."""
    _, path = checkpoint_path(run_dir, checkpoint)
    dev = resolve_device(device)
    model, cfg, state = load_trained(path, dev)
    return FrozenModel(model, cfg, None, input_augmenter(cfg, model.layout), dev, state=state, path=path)
