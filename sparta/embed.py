"""Encode users' own (sparse) data with a trained encoder, and decode embeddings back to fields.

``embed`` encodes every day of a prepared store, complete, with a random mask ratio, or with a
fixed observation mask (e.g. station locations), and writes an xarray Dataset (``.zarr`` or
``.nc``)::

    embedding            (time, feature)  float32
    norm_mean, norm_std  (channel,)       the z-score statistics the model used
    observation_mask     ([channel,] lat, lon) int8, only with a fixed mask (1 = observed)
    lat, lon                              the store's grid, for ``decode`` (``lat_LONxLAT``,
                                          ``lon_LONxLAT`` per grid when variables are on several)
    attrs                run, checkpoint, config/weights digests, method, fusion, preset, sparta
                         version, variables, grid, source, masking

``decode`` checks that the embeddings came from the model it is given (embedding size, config
digest and weights digest) and writes one ``(time, lat, lon)`` variable per channel in physical
units. Models load only through the safe checkpoint loader; files are read with xarray.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sparta import __version__, grids
from sparta.data.store import DataError, PreparedStore, Store, check_domain, open_store
from sparta.families import FAMILIES
from sparta.inference import (channel_units, check_keep, check_masking, checkpoint_path, fields_dataset, grid_dims,
                              load, load_frozen, mask_values, weights_digest)
from sparta.outputs import atomic_write, check_output_file, foreign_entries, listing

log = logging.getLogger(__name__)

SUFFIXES = (".zarr", ".nc")
TITLES = ("SPARTA embeddings", "SPARTA decoded fields")
_PICKLE_CODEC = re.compile(r'"(id|name)"\s*:\s*"(numcodecs\.)?pickle"')


class _Normalised:
    """Z-scored view of a store's fields, read slice by slice so the record is never in memory whole."""

    def __init__(self, store: Store):
        self.store = store

    def __len__(self) -> int:
        return len(self.store.times)

    def __getitem__(self, index: slice) -> grids.Fields:
        return self.store.normalise(self.store.read(index))


def _check_output(out: Path, overwrite: bool) -> None:
    """Refuse an output that cannot be written, or one that exists (without ``overwrite``, or when SPARTA did
    not write it: --overwrite replaces only SPARTA's own embeddings and decoded files)."""
    if out.suffix not in SUFFIXES:
        raise DataError(f"output '{out}' must end in .zarr or .nc (got '{out.suffix or 'no suffix'}')")
    check_output_file(out)
    if not out.exists():
        return
    if not overwrite:
        raise DataError(f"output '{out}' already exists; choose another --out or pass --overwrite to replace it")
    foreign = _not_written_by_sparta(out)
    if foreign:
        raise DataError(f"output '{out}' was not written by SPARTA ({foreign}); --overwrite replaces only SPARTA's "
                        "embeddings and decoded files, never other files: choose another --out")


def _not_written_by_sparta(out: Path) -> str | None:
    """Why ``out`` is not an embeddings or decoded-fields file SPARTA wrote (None when it is one)."""
    if out.suffix == ".zarr":
        if not out.is_dir():
            return "a file, not a zarr directory"
        try:
            title = json.loads((out / ".zattrs").read_text()).get("title")
        except (OSError, ValueError, AttributeError):
            return "no zarr attributes with a SPARTA title"
        if title not in TITLES:
            return f"its title is {title!r}"

        def owned(entry: Path) -> bool:
            if entry.parent == out:
                return entry.name in (".zattrs", ".zgroup", ".zmetadata") or (entry / ".zarray").is_file()
            return entry.name in (".zarray", ".zattrs") or bool(re.fullmatch(r"[0-9.]+", entry.name))

        foreign = foreign_entries(out, owned)
        return f"it also holds {listing(foreign)}" if foreign else None
    if out.is_dir():
        return "a directory"
    try:
        with xr.open_dataset(out, engine="netcdf4") as ds:
            title = ds.attrs.get("title")
    except Exception:  # noqa: BLE001 - unreadable as netCDF: certainly not ours
        return "not a netCDF file"
    return None if title in TITLES else f"its title is {title!r}"


def _write(ds: xr.Dataset, out: Path) -> None:
    """Write ``ds`` atomically (no half-written outputs): zarr format 2 (readable by every zarr) or netCDF4."""
    if out.suffix == ".zarr":
        atomic_write(out, lambda tmp: ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True))
    else:
        atomic_write(out, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4"))


def _open(path: Path, what: str) -> xr.Dataset:
    if path.suffix not in SUFFIXES:
        raise DataError(f"{what} '{path}' must be a .zarr or .nc file (got '{path.suffix or 'no suffix'}')")
    if not path.exists():
        raise DataError(f"{what} '{path}' does not exist")
    if path.suffix == ".zarr":
        _refuse_pickle_codec(path, what)
    try:
        return xr.open_dataset(path, engine="zarr" if path.suffix == ".zarr" else "netcdf4")
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{what} '{path}' is unreadable: {str(err).splitlines()[0][:160]}") from None


def _refuse_pickle_codec(path: Path, what: str) -> None:
    """Zarr arrays may be encoded with the pickle codec, whose decoding runs arbitrary code: refuse them."""
    for meta in path.rglob("*"):
        if meta.name in (".zarray", ".zmetadata", "zarr.json") and _PICKLE_CODEC.search(meta.read_text()):
            raise DataError(f"{what} '{path}' stores arrays with the pickle codec, which is unsafe to read; "
                            "write it without pickled objects")


def load_observation_mask(path: str | Path, store: PreparedStore) -> torch.Tensor:
    """A fixed observation mask on the store's grid, ``(n_lat, n_lon)`` bool, True = observed, or one per
    channel, ``(1, channel, n_lat, n_lon)``, from a ``(channel, lat, lon)`` array or variable (dimension
    ``channel`` or ``variable`` holding the store's channel names, e.g. ``t2m``, ``z850``).

    ``path``: a ``.npy`` bool (or 0/1) array already on the store's grid (latitude ascending), or
    a netCDF/zarr file with one boolean or 0/1 variable over ``(lat, lon)`` (``latitude`` and
    ``longitude`` are accepted; descending latitude and longitudes in another notation (-180..180,
    or 0..360 for a regional box across Greenwich) are reordered into the store's, and the
    coordinates must match the store's within 1e-3 degrees).
    """
    path = Path(path)
    if path.suffix == ".npy":
        if not path.is_file():
            raise DataError(f"mask '{path}' does not exist")
        try:
            values = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise DataError(f"mask '{path}' is not a plain numpy array: {err}") from None
    else:
        values = mask_values(_mask_variable(_open(path, "mask"), path), store.lat, store.lon, f"mask '{path}'",
                             store.grid, list(store.channels))
    return check_keep(values, f"mask '{path}'", (len(store.lat), len(store.lon)), store.grid, len(store.channels))


def _mask_variable(ds: xr.Dataset, path: Path) -> xr.DataArray:
    """The one variable over (lat, lon), or (channel or variable, lat, lon), of a mask file."""
    ds = grids.rename_lat_lon(ds)
    candidates = [name for name, var in ds.data_vars.items() if {"lat", "lon"} <= set(var.dims)]
    if len(candidates) != 1:
        found = ", ".join(f"{n}{tuple(map(str, v.dims))}" for n, v in ds.data_vars.items()) or "none"
        raise DataError(f"mask '{path}' needs exactly one variable over (lat, lon), found: {found}")
    return ds[candidates[0]]


def embed(
    run_dir: str | Path,
    store: Store | str | Path,
    out: str | Path,
    *,
    mask: str | Path | None = None,
    mask_ratio: float | None = None,
    checkpoint: str = "best",
    seed: int = 0,
    overwrite: bool = False,
    device: str = "auto",
) -> xr.Dataset:
    """Encode every time step of ``store`` with the run's model and write the embeddings to ``out``.

    ``mask`` (a file, see :func:`load_observation_mask`) hides the same unobserved points every
    day; ``mask_ratio`` hides that fraction of points at random per day (drawn under ``seed``).
    Returns the Dataset that was written.
    """
    out = Path(out)
    _check_output(out, overwrite)
    check_masking(mask is not None, mask_ratio, ("--mask", "--mask-ratio"))
    run, path = checkpoint_path(run_dir, checkpoint)
    if isinstance(store, (str, Path)):
        store = open_store(store)
    try:
        frozen = load_frozen(path, store, device)
    except DataError as err:
        raise DataError(f"{err}; prepare your data with the run's variables and grid "
                        f"(`sparta data prepare ... data.variables=... data.grid=...`)") from None
    check_domain(store, frozen.cfg.data.box)
    if mask is not None and len(store.parts) > 1:
        raise DataError(f"--mask gives observed points on one grid, but the variables of '{store.path}' are on "
                        f"several ({store.grid}); use --mask-ratio")
    keep = load_observation_mask(mask, store) if mask is not None else None
    log.info("encoding %d days of %s with %s", len(store.times), store.path, path)
    h = frozen.encode(_Normalised(store), None if mask_ratio is None else float(mask_ratio), seed=seed, keep=keep)

    cfg = frozen.cfg
    masking: dict[str, str | float | int] = {"masking": "none"}
    data_vars: dict[str, tuple] = {
        "embedding": (("time", "feature"), h.numpy()),
        "norm_mean": (("channel",), store.mean.astype(np.float32)),
        "norm_std": (("channel",), store.std.astype(np.float32)),
    }
    if keep is not None:
        masking = {"masking": "fixed", "mask_file": str(Path(mask).resolve()),
                   "observed_fraction": float(keep.float().mean())}
        dims = ("lat", "lon") if keep.dim() == 2 else ("channel", "lat", "lon")
        data_vars["observation_mask"] = (dims, keep.reshape(-1, *keep.shape[-2:]).squeeze(0).numpy().astype(np.int8))
    elif mask_ratio is not None:
        masking = {"masking": "ratio", "mask_ratio": float(mask_ratio), "mask_seed": int(seed)}
    ds = xr.Dataset(
        data_vars,
        coords={"time": store.times.astype("datetime64[ns]"), "feature": np.arange(h.shape[1]),
                "channel": list(store.channels),
                "channel_units": ("channel", channel_units(store.variables, store.channels, store.units),
                                  {"long_name": "CF units of each channel's physical values"}),
                **{dim: values for part in store.parts
                   for dim, values in zip(grid_dims(part.layout[0], store.layout), (part.lat, part.lon))}},
        attrs={
            "title": "SPARTA embeddings",
            "sparta_version": __version__,
            "run": str(run.path.resolve()),
            **frozen.identity(),
            "checkpoint": checkpoint,
            "embed_dim": int(h.shape[1]),
            "variables": ",".join(store.variables),
            "grid": store.grid,
            "data_store": str(Path(store.path).resolve()),
            "data_source": store.source,
            "time_aggregation": store.time_aggregation,
            "normalisation": "z = (x - norm_mean) / norm_std per channel; " + FAMILIES[cfg.method].hidden,
            **masking,
        },
    )
    ds["embedding"].attrs.update(long_name=FAMILIES[cfg.method].embedding, units="1")
    for name in ("norm_mean", "norm_std"):
        ds[name].attrs.update(long_name=f"{name[5:]} of each channel used for the z-score",
                              units="per channel: see channel_units")
    _write(ds, out)
    return ds


def decode(
    run_dir: str | Path,
    embeddings: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    device: str = "auto",
) -> xr.Dataset:
    """Decode embeddings written by :func:`embed` to physical fields with the same run's model.

    The checkpoint (best or last) is the one the embeddings were made with. Refuses embeddings of
    another model: other embedding size, config digest or weights. Returns the Dataset written.
    """
    out, embeddings = Path(out), Path(embeddings)
    _check_output(out, overwrite)
    with _open(embeddings, "embeddings") as ds:
        if "embedding" not in ds or ds["embedding"].dims != ("time", "feature") or "config_digest" not in ds.attrs:
            raise DataError(f"'{embeddings}' is not a SPARTA embeddings file (no embedding(time, feature) "
                            "with a config_digest); write it with `sparta embed`")
        attrs = dict(ds.attrs)
        h = torch.from_numpy(np.asarray(ds["embedding"].values, dtype=np.float32))
        times = ds["time"].values
        coords = {name: ds[name].values for name in ds.coords if str(name).startswith(("lat", "lon"))}
        file_units = (dict(zip(map(str, ds["channel"].values), map(str, ds["channel_units"].values)))
                      if "channel_units" in ds.coords else {})
        aggregation = ds.attrs.get("time_aggregation")
    checkpoint = str(attrs.get("checkpoint", "best"))
    run, path = checkpoint_path(run_dir, checkpoint)
    frozen = load(run.path, checkpoint, device)
    cfg = frozen.cfg
    made_by = f"(made by run {attrs.get('run', '?')}); decode them with that run"
    if h.shape[1] != cfg.model.embed_dim:
        raise DataError(f"'{embeddings}' holds {h.shape[1]}-dim embeddings, the model of {run.path} expects "
                        f"{cfg.model.embed_dim} {made_by}")
    if attrs["config_digest"] != cfg.digest():
        raise DataError(f"'{embeddings}' were made by another model/config (digest {attrs['config_digest']} "
                        f"!= {cfg.digest()} of {run.path}) {made_by}")
    if attrs.get("weights_digest") != weights_digest(frozen.model):
        raise DataError(f"'{embeddings}' were made with other weights than {path} (another run of the same "
                        f"config, or the run was trained further since) {made_by}")

    model_coords = frozen.coords()
    for name, values in model_coords.items():  # the file's coordinates where it has them for the model's grid
        if name in coords and len(coords[name]) == len(values):
            model_coords[name] = coords[name]
    units = channel_units(frozen.variables, frozen.channels, file_units or None)
    result = fields_dataset(
        frozen.layout, grids.as_list(frozen.decode(h)), times, frozen.variables, frozen.channels, units,
        model_coords, aggregation,
        attrs={"title": "SPARTA decoded fields", "sparta_version": __version__, "run": str(run.path.resolve()),
               "checkpoint": checkpoint, "config_digest": cfg.digest(),
               "weights_digest": attrs["weights_digest"], "grid": frozen.state["grid"],
               "embeddings": str(embeddings.resolve()), "masking": attrs.get("masking", "none"),
               **({"time_aggregation": aggregation} if aggregation else {})},
    )
    _write(result, out)
    return result
