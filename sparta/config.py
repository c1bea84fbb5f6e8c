"""Typed, validated configuration with named presets and ``key=value`` overrides.

The defaults are the paper's settings; presets (``sparta/presets/*.yaml``) override
a subset. Unknown keys and invalid values fail before any work starts, with a
message naming the offending key.
"""

from __future__ import annotations

import hashlib
from datetime import date
import json
from importlib import resources
from pathlib import Path
from collections.abc import Callable, Collection
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from sparta.errors import UserError
from sparta.families import FAMILIES
from sparta.grids import parse_grid
from sparta.sources import SOURCES


class ConfigError(UserError, ValueError):
    """A configuration key or value is invalid; the message names it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _grid_name(value: str) -> str:
    parse_grid(value, least=1)  # the format's one home; grids too small for the encoder get advice later
    return value


#: A WeatherBench2 grid name, LONxLAT (``64x32``), checked by ``sparta.grids.parse_grid``.
GridName = Annotated[str, AfterValidator(_grid_name)]


FUSION_NAMES = ("early", "attention", "gnn")
"""The values of ``model.fusion``: the names under which ``sparta.models.fusion`` registers its encoder fronts
(``register_fusion``, which refuses a name missing here; a test checks the two agree). Listed here rather than read
from that registry so that validating a config does not import torch and torch-geometric (~4 s)."""


def _one_of(names: Collection[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in names:  # worded as pydantic words a Literal's error
            *first, last = [f"'{n}'" for n in names]
            raise ValueError(f"Input should be {', '.join(first)} or {last}")
        return value
    return check


#: A ``model.fusion`` value: one of :data:`FUSION_NAMES`.
FusionName = Annotated[str, AfterValidator(_one_of(FUSION_NAMES))]
#: A ``method`` value: a family of :data:`sparta.families.FAMILIES`.
MethodName = Annotated[str, AfterValidator(_one_of(FAMILIES))]  # the live table: a family added later validates


def _iso_date(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value  # YAML reads 2000-01-01 as a date



DEFAULT_VARIABLES = [
    "2m_temperature",
    "geopotential@850",
    "u_component_of_wind@850",
    "v_component_of_wind@850",
    "specific_humidity@850",
]


class DataConfig(_Strict):
    source: str = Field("synthetic", description="a generated source ("
                        + "; ".join(f"'{s.name}': {s.description}" for s in SOURCES.values())
                        + ") or a WeatherBench2-schema zarr/netCDF path or URL")
    store: str = Field("data/synthetic", description="prepared store directory that training reads")
    variables: list[str] = Field(default_factory=lambda: list(DEFAULT_VARIABLES),
                                 description="WeatherBench2 variable names, '@level' for pressure levels")
    grid: GridName = Field("64x32", description="lon x lat, as WeatherBench2 names its grids")
    variable_grids: dict[str, GridName] = Field(
        default_factory=dict, description="variables on a grid other than data.grid, e.g. "
        "{2m_temperature: 128x64}; each is encoded and decoded on its own grid (late fusion only)")
    box: tuple[float, float, float, float] | None = Field(
        None, description="regional domain: [lat_first, lat_last, lon_first, lon_last] of the grid's first and last "
        "cell centres (degrees), data.grid points spread evenly over it, e.g. [50, 58, -10, 2] with data.grid=49x33 "
        "(0.25 deg); longitudes may cross Greenwich (-10..2, or 350..2 in 0..360 notation); null: a global grid")
    regrid: bool = Field(False, description="conservatively regrid a source on another regular grid to the "
                         "configured grid(s)")
    assume_units: bool = Field(False, description="accept variables whose CF units are missing or unknown as "
                               "already in SPARTA's units (K, m**2 s**-2, kg kg**-1, m s**-1, ...)")
    member: int | Literal["mean"] | None = Field(None, description="ensemble sources (a 'number' dimension): the "
                                                 "member to use, or 'mean' for the ensemble mean")
    years: float = Field(30, gt=0, description="length of a generated record in years")
    start: Annotated[str, BeforeValidator(_iso_date)] = Field("1980-01-01", description="first day of a generated record")
    seed: int = Field(0, description="seed of a generated record: the synthetic draws, SPEEDY's initial perturbation")
    # the speedy source's settings: flat keys, because every trained run's config digest includes them
    gcm_truncation: Literal[21, 31] = Field(21, description="spectral truncation of the SPEEDY model (T21: 64x32 "
                                            "Gaussian grid, T31: 96x48), regridded conservatively to data.grid")
    spinup_days: int = Field(180, ge=0, description="SPEEDY days simulated from rest before the record and "
                             "discarded, while the atmosphere and the land adjust (docs/decisions.md)")
    gcm_runs: int = Field(1, ge=1, description="independent SPEEDY simulations the record is cut into, consecutive in "
                          "date, each spun up on its own and simulated side by side (one per core); the weather "
                          "jumps at each join")
    split: tuple[float, float, float] = Field((0.6, 0.2, 0.2), description="chronological train/val/test fractions")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if abs(sum(self.split) - 1.0) > 1e-6 or min(self.split) <= 0:
            raise ValueError(f"data.split must be three positive fractions summing to 1, got {self.split}")
        if not self.variables:
            raise ValueError("data.variables must list at least one variable")
        try:
            date.fromisoformat(self.start)
        except ValueError:
            raise ValueError(f"data.start must be a date YYYY-MM-DD, got '{self.start}'") from None
        if self.box is not None:
            from sparta.domain import Box

            Box.parse(self.box)  # a ValueError names what is wrong with the box
        unknown = sorted(set(self.variable_grids) - set(self.variables))
        if unknown:
            raise ValueError(f"data.variable_grids names {unknown}, which data.variables does not list "
                             f"({self.variables})")
        return self

    def grid_of(self, variable: str) -> str:
        return self.variable_grids.get(variable, self.grid)

    def grouped_variables(self) -> dict[str, list[str]]:
        """Grid -> its variables, grids in the order their variables first appear (the store's channel order)."""
        groups: dict[str, list[str]] = {}
        for variable in self.variables:
            groups.setdefault(self.grid_of(variable), []).append(variable)
        return groups

    @property
    def generated(self) -> bool:
        """``source`` is one SPARTA generates (:data:`sparta.sources.SOURCES`), not a path or URL."""
        return self.source in SOURCES

    @property
    def days(self) -> int:
        """The length of a generated record in days."""
        return round(self.years * 365.25)

    @property
    def mixed_grids(self) -> bool:
        return len(self.grouped_variables()) > 1

    @property
    def n_lon(self) -> int:
        return parse_grid(self.grid)[0]

    @property
    def n_lat(self) -> int:
        return parse_grid(self.grid)[1]


class AugmentConfig(_Strict):
    mode: Literal["paper", "native"] = Field(
        "paper", description="paper: bicubic resize x resize_factor then random crop to x crop_factor; "
        "native: random periodic longitude shift on the native grid (fast)")
    resize_factor: float = Field(2.5, gt=1.0, description="160x80 from 64x32")
    crop_factor: float = Field(2.25, gt=0.0, description="144x72 from 64x32; also the encoder's input size")
    smooth_kernel: int = Field(5, ge=1, description="box filter size; 1 disables smoothing")
    mask_low: float = Field(0.5, ge=0.0, lt=1.0)
    mask_high: float = Field(0.9, gt=0.0, le=1.0)
    mask_on: Literal["native", "upsampled"] = Field(
        "native", description="native: hide grid points before resizing (true sparsity); "
        "upsampled: the reference code's behaviour, masking after upsampling")
    mask_per_channel: bool = Field(False, description="independent mask per channel (the reference) instead of one per point")

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        if self.mask_low > self.mask_high:
            raise ValueError(f"augment.mask_low ({self.mask_low}) must not exceed augment.mask_high ({self.mask_high})")
        if self.crop_factor > self.resize_factor:
            raise ValueError("augment.crop_factor must not exceed augment.resize_factor")
        return self


class SamplerConfig(_Strict):
    hard_negatives: bool = Field(True, description="batches of (anchor, soft, hard) triplets")
    hard_min: int = Field(11, ge=1, description="hard negatives lie hard_min..hard_max days from the anchor")
    hard_max: int = Field(40, ge=2)
    soft_min: int = Field(1000, ge=1, description="soft negatives lie at least this many days away")
    max_delta: int = Field(5, ge=1, description="positives at t +- delta, delta in 1..max_delta")
    delta_decay: float = Field(0.1, ge=0.0, description="p(delta) proportional to exp(-delta_decay * delta)")

    @model_validator(mode="after")
    def _check(self) -> SamplerConfig:
        if self.hard_min > self.hard_max:
            raise ValueError("sampler.hard_min must not exceed sampler.hard_max")
        return self


class ModelConfig(_Strict):
    fusion: FusionName = Field("early", description=f"one of {', '.join(FUSION_NAMES)}; early: one encoder over "
                               "all channels, the others one encoder per variable (late fusion)")
    width: int = Field(64, ge=4, description="ResNet-18 base width (64 in the paper)")
    embed_dim: int = Field(1000, ge=8, description="size of the embedding h")
    proj_dim: int = Field(128, ge=4, description="size of the projection z")
    stem_norm: Literal["batch", "group"] = Field("batch", description="norm after the first conv (paper: batch)")
    norm: Literal["group", "batch"] = Field(
        "group", description="norm of the residual blocks: group (paper; per-sample statistics, which discard "
        "anomaly amplitudes) or batch (keeps them)")
    gn_groups: int = Field(0, ge=0, description="GroupNorm groups; 0 = one group per channel (reference)")
    stem: Literal["imagenet", "cifar"] = Field(
        "imagenet", description="imagenet: 7x7 stride-2 conv + max-pool, 32x downsampling (paper); "
        "cifar: 3x3 stride-1 conv, no pool, 8x downsampling (keeps resolution on coarse grids)")
    pool: GridName = Field("1x1", description="LONxLAT grid the encoder's last map is "
                      "average-pooled to before the fc layer; 1x1 = global pooling (paper), larger grids keep "
                      "where features are")
    decoder_channels: int = Field(500, ge=5, description="channels at the decoder's coarsest level")
    decoder_blocks: int = Field(5, ge=1, description="x2 upsampling blocks from the decoder's seed map (paper: 5)")
    linear_path: bool = Field(False, description="linear maps beside the networks, field -> h in the encoder and "
                              "h -> field in the decoder (a global, EOF-like path; not in the paper)")
    linear_init: Literal["random", "eof"] = Field(
        "random", description="eof: the linear paths start as the train split's leading EOFs (projection onto "
        "standardised PCs and its inverse) and the networks' output layers at zero, so training starts from the "
        "EOF reconstruction and the networks learn what EOFs miss (not in the paper; needs linear_path, early "
        "fusion and augment.mode=native)")
    mean_field: bool = Field(False, description="the decoder adds a learned bias per variable and grid point that "
                             "starts at the train split's mean field, so the network decodes anomalies from it (not in "
                             "the paper, whose decoder must build the mean pattern from h; with linear_init=eof the "
                             "linear path's bias holds the mean already)")
    decoder_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    attention_heads: int = Field(8, ge=1)
    graph: list[tuple[str, str]] | None = Field(
        None, description="undirected edges between variable short names for gnn fusion; None = default relations")

    @property
    def pool_hw(self) -> tuple[int, int]:
        """``pool`` as (lat, lon) cells."""
        n_lon, n_lat = parse_grid(self.pool, least=1)
        return n_lat, n_lon


class LossConfig(_Strict):
    temperature: float = Field(0.3, gt=0.0)
    cycle: bool = Field(True, description="add the cycle-consistency loss on h")
    cycle_weight: float = Field(1.0, ge=0.0)
    area_weighted: bool = Field(False, description="weight each point's squared reconstruction error by its cell's "
                                "area, as every score is weighted (the paper's loss is unweighted)")
    alpha_decay: float = Field(0.01, ge=0.0, description="k in alpha(epoch) = exp(-k * epoch)")
    recon_target: Literal["aligned", "uncropped"] = Field(
        "aligned", description="stage-2 t+-delta targets: the same crop as the input, or the raw native fields (reference)")


class TrainConfig(_Strict):
    batch_size: int = Field(126, ge=3, description="contrastive batch; a multiple of 3 with hard negatives")
    lr: float = Field(1e-4, gt=0.0)
    autoencoder_lr: float = Field(1e-3, gt=0.0)
    epochs_pretrain: int = Field(100, ge=0)
    epochs_blend: int = Field(250, ge=0)
    epochs_decoder: int = Field(200, ge=0)
    epochs_autoencoder: int = Field(180, ge=0)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap on training steps per epoch (None = full split)")
    val_steps: int | None = Field(None, ge=1, description="cap on validation steps per epoch")
    linear_lr_scale: float = Field(
        1.0, gt=0.0, le=1.0, description="learning-rate factor of the linear paths (model.linear_path): Adam moves "
        "every weight by about lr per step, and EOF-initialised weights are ~1e-3 in size")
    plateau_factor: float = Field(0.1, gt=0.0, lt=1.0)
    plateau_patience: int = Field(10, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast dtype; auto: bf16 where the hardware computes it natively (a CUDA GPU "
        "that supports it, a CPU with avx512_bf16 or AMX), else fp32; the run log says which and why")
    channels_last: bool | None = Field(None, description="NHWC memory format for the convolutions, CUDA only; "
                                       "None: on for CUDA")
    compile: bool | None = Field(None, description="torch.compile the encoder; None: on for CUDA; on CPU it needs "
                                 "a C++ compiler and pays off on long runs only (the paper preset turns it on)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(0, ge=0)
    seed: int = 0
    on_nonfinite: Literal["stop", "skip"] = Field("stop", description="what to do on a NaN/inf loss")


class DownstreamConfig(_Strict):
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-2, gt=0.0)
    forecast_epochs: int = Field(100, ge=1)
    diffusion_epochs: int = Field(300, ge=1)
    classifier_epochs: int = Field(100, ge=1)
    forecast_settings: list[tuple[int, int]] = Field(
        default_factory=lambda: [(30, 1), (5, 5), (5, 10)], min_length=1, description="(look-back, stride) pairs")
    forecast_seeds: list[int] = Field(default_factory=lambda: [0, 42, 123], description="seeds for stride > 1")
    rollout_steps: int = Field(100, ge=1)
    lead_times: list[int] = Field(default_factory=lambda: [1, 2, 5, 10, 25, 50, 75, 100],
                                  description="leads reported in tables (paper: 25-100; 1-10 show short-range skill)")
    lstm_hidden: int = Field(128, ge=1)
    linear_forecast: bool = Field(True, description="also forecast with a linear inverse model of the latents (the "
                                  "'LIM' tables, beside the LSTM settings): fitted in closed form on the complete "
                                  "inner-train days, started from the last masked day of the first setting's windows")
    forecast_residual: bool = Field(False, description="the LSTM predicts each step's change from the previous "
                                    "latent plus a learned decay towards the mean latent, starting as persistence "
                                    "(paper: the latent itself)")
    forecast_lr: float | None = Field(None, gt=0.0, description="the LSTM forecaster's lr; None: downstream.lr")
    forecast_horizon: int = Field(1, ge=1, description="training target length in steps (paper: 1, next step only; "
                                  "longer targets teach the LSTM its own rollout)")
    condition_mask: float = Field(0.7, ge=0.0, lt=1.0, description="mask ratio of forecast inputs and diffusion conditions")
    forecast_mask_draws: int = Field(8, ge=1, description="independent 70%-mask draws encoded per day for the "
                                     "forecaster's training and validation inputs; every read of a window takes one "
                                     "draw per day at random (the authors re-mask at every read); 1: one fixed mask "
                                     "per day, reused by every window and epoch")
    classify_seeds: int = Field(3, ge=1, description="season classifiers trained with different seeds on the same "
                                "embeddings: the accuracy is their mean, beside its spread over seeds")
    classify_mask_low: float = Field(0.2, ge=0.0, lt=1.0)
    classify_mask_high: float = Field(0.9, gt=0.0, le=1.0)
    diffusion_steps: int = Field(1000, ge=2)
    beta_start: float = Field(1e-4, gt=0.0)
    beta_end: float = Field(0.02, gt=0.0)
    diffusion_lr: float = Field(1e-3, gt=0.0, description="the authors' code; the paper (6.1.3) states 1e-2 for every "
                                "downstream model, which the paper preset uses: at the quick size (hidden 256, 128-d "
                                "latents, 40 epochs) 1e-2 left the DDPM loss at the noise level (1.00 against 0.26)")
    diffusion_hidden: int = Field(1024, ge=8)
    condition_tokens: int = Field(8, ge=1, description="the condition embedding is split into this many attention tokens")
    diffusion_samples: int = Field(20, ge=1, description="generations per condition")
    diffusion_residual: bool = Field(False, description="generate the complete day's latent minus its condition's "
                                     "(the paper: the latent itself); see DiffusionSpace")
    max_conditions: int | None = Field(None, ge=1, description="cap on evaluated diffusion conditions")
    density_sigma: float = Field(20.0, gt=0.0)
    realism_k: int = Field(5, ge=1)
    smoothness_days: int = Field(256, ge=3)

    @model_validator(mode="after")
    def _check(self) -> DownstreamConfig:
        if max(self.lead_times) > self.rollout_steps:
            raise ValueError("downstream.lead_times must not exceed downstream.rollout_steps")
        return self


#: The smallest encoder input per axis, by model.stem (sparta.models.resnet: 16 with the paper's stem, 4 with cifar).
MIN_ENCODER_INPUT = {"imagenet": 16, "cifar": 4}


def _too_small_grids(data: DataConfig, augment: AugmentConfig, stem: str) -> str | None:
    """Why a grid of ``data`` is too small for the encoder (its input: the grid x crop_factor in paper mode)."""
    least = MIN_ENCODER_INPUT.get(stem, 16)
    scale = augment.crop_factor if augment.mode == "paper" else 1.0
    for grid in dict.fromkeys([data.grid, *data.variable_grids.values()]):
        n_lon, n_lat = parse_grid(grid, least=1)  # tiny grids get the advice below, not parse_grid's message
        size = (round(n_lon * scale), round(n_lat * scale))
        if min(size) >= least:
            continue
        need = next(n for n in range(1, least + 1) if round(n * scale) >= least)
        where = (f"with augment.mode=paper its input is the grid x crop_factor {scale:g} = {size[0]}x{size[1]}"
                 if augment.mode == "paper" else f"with augment.mode={augment.mode} its input is the grid itself")
        return (f"data grid {grid} is too small for the encoder: the ResNet (model.stem={stem}) needs at least "
                f"{least} points per axis at its input, and {where}; use a grid of at least {need} points per "
                f"axis (e.g. data.grid={max(need, n_lon)}x{max(need, n_lat)} with data.regrid=true)")
    return None


class Config(_Strict):
    method: MethodName = Field(
        "sparta", description="the model family (sparta.families.FAMILIES): "
                              + "; ".join(f"{f.name}: {f.description}" for f in FAMILIES.values()))
    preset: str = "paper"
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    downstream: DownstreamConfig = Field(default_factory=DownstreamConfig)

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.sampler.hard_negatives and self.train.batch_size % 3:
            raise ValueError(
                f"train.batch_size={self.train.batch_size} must be a multiple of 3 with sampler.hard_negatives=true "
                "(batches are anchor/soft/hard triplets), e.g. 126")
        closed_form = FAMILIES[self.method].closed_form  # no encoder network: any grid, no views
        small = None if closed_form else _too_small_grids(self.data, self.augment,
                                                           getattr(self.model, "stem", "imagenet"))
        if small:
            raise ValueError(small)
        if self.data.mixed_grids and self.model.fusion == "early" and not closed_form:
            grids = ", ".join(f"{grid}: {', '.join(v)}" for grid, v in self.data.grouped_variables().items())
            late = [name for name in FUSION_NAMES if name != "early"]
            raise ValueError(
                f"data.variable_grids puts the variables on several grids ({grids}), but model.fusion=early "
                f"stacks all variables as channels of one image: use late fusion (model.fusion={' or '.join(late)}), "
                "or drop data.variable_grids so every variable is regridded to data.grid (data.regrid=true)")
        if self.model.mean_field and self.model.linear_init == "eof" and not closed_form:
            raise ValueError("model.mean_field=true adds the train split's mean to the decoder, which "
                             "model.linear_init=eof already starts with: set one of them")
        if self.model.linear_init == "eof" and not closed_form:
            needs = [f"{key}={want} (is {have})" for key, want, have in [
                ("model.linear_path", "true", str(self.model.linear_path).lower()),
                ("model.fusion", "early", self.model.fusion),
                ("augment.mode", "native", self.augment.mode)] if have != want]
            if needs:
                raise ValueError("model.linear_init=eof fits the EOFs of native-grid fields to the encoder's and "
                                 f"decoder's linear paths; it needs {', '.join(needs)}, or set model.linear_init=random")
        return self

    def digest(self) -> str:
        """Short hash of the settings that define the trained model.

        Left out: run bookkeeping, where the data lives (stores are checked by content: variables,
        grid, statistics) and how training ran on the hardware (device, workers, precision, memory
        format, compilation), so a model can be evaluated elsewhere.
        """
        payload = self.model_dump(mode="json", exclude={
            "preset": True, "downstream": True, "data": {"source", "store"},
            "train": {"device", "num_workers", "precision", "channels_last", "compile"}})
        for section, key in DIGEST_IF_SET:  # off, they train as runs did before the key existed
            if payload[section][key] == type(getattr(self, section)).model_fields[key].default:
                del payload[section][key]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


DIGEST_IF_SET = (("model", "mean_field"), ("loss", "area_weighted"), ("data", "gcm_runs"))
"""Keys added after runs were trained: at their default they leave a config's digest as it was, so those runs
still resume and evaluate."""


def available_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("sparta.presets").iterdir() if p.name.endswith(".yaml"))


def _preset_dict(name: str) -> dict[str, Any]:
    if name not in available_presets():
        raise ConfigError(f"unknown preset '{name}'; available: {', '.join(available_presets())}")
    text = resources.files("sparta.presets").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.epochs_pretrain=3", "model.fusion=gnn"]`` -> nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form section.key=value")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with another override of '{part}'")
        node[leaf] = _plain_yaml(raw, f"override '{item}'") if raw.strip() else ""
    return nested


def _plain_yaml(text: str, where: str) -> Any:
    """``text`` parsed as YAML of plain values. A tag that would build a Python object (``!!python/...``) or a
    syntax error is one ConfigError line: ``yaml.safe_load`` builds no objects, so nothing in the text runs."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        tag = problem.partition("for the tag ")[2].strip("'").replace("tag:yaml.org,2002:", "!!")
        if isinstance(err, yaml.constructor.ConstructorError) and tag:
            raise ConfigError(f"{where} has the YAML tag '{tag}'{at}; a SPARTA config holds plain values only, "
                              "no tags that build (Python) objects: nothing was loaded or run") from None
        raise ConfigError(f"{where} is not valid YAML: {problem}{at}") from None


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "config"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{key}'")
        elif e["type"] == "value_error" and not e["loc"]:  # a whole-config check: its message says it all
            lines.append(str(e["ctx"]["error"]) if "error" in e.get("ctx", {}) else e["msg"])
        elif e["type"] == "value_error" and "error" in e.get("ctx", {}):  # a field check (e.g. a grid name)
            lines.append(f"invalid value for '{key}': {e['ctx']['error']}")
        else:
            lines.append(f"invalid value for '{key}': {e['msg']}")
    return "; ".join(lines)


def validate(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load_config(preset: str = "quick", overrides: list[str] | None = None, **fields: Any) -> Config:
    """Defaults <- preset <- keyword fields (e.g. ``method``) <- ``key=value`` overrides."""
    raw = _merge(_preset_dict(preset), {"preset": preset, **fields})
    raw = _merge(raw, parse_overrides(overrides or []))
    return validate(raw)


def load_config_file(path: str | Path) -> Config:
    return validate(_plain_yaml(Path(path).read_text(), f"'{path}'") or {})
