"""One trainer for every stage of SPARTA and for the autoencoder baseline.

The stages differ only in data (:class:`Stage` flags), which parameters learn and
which loss terms are on; the loop, validation, scheduling, checkpointing and
resume are shared. Every epoch draws its randomness from generators seeded by
(seed, stage, epoch), so a run resumed from any epoch boundary reproduces the
uninterrupted run exactly. SIGINT/SIGTERM stop training at the next step and leave
the last complete epoch's checkpoint as the resume point.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sparta import dist, grids
from sparta.augment import Augmenter, MultiGridAugmenter, build_augmenter, observed_cat
from sparta.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sparta.config import Config, TrainConfig
from sparta.data.store import Store, month_index, monthly_climatology
from sparta.errors import UserError
from sparta.families import FAMILIES, resolve
from sparta.models.build import build_model, resolve_device
from sparta.losses import blend_alpha, blended_loss, cycle_loss, reconstruction_loss, temporal_contrastive_loss
from sparta.metrics import eddy_correlation, embedding_std, lat_weights, rrmse
from sparta.models import SpartaModel
from sparta.models.eof import EOFModel, fit_eof, split_rrmse
from sparta.plots import plot_adjacency, plot_eof_spectrum, plot_training_curves
from sparta.runs import Run
from sparta.sampling import ContrastiveBatchSampler, ContrastiveDataset
from sparta.seeding import derive_seed, generator

log = logging.getLogger(__name__)


class TrainingError(UserError, RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); the message names stage, epoch and term."""


class TrainingInterrupted(TrainingError):
    """SIGINT/SIGTERM stopped training; ``signum`` lets a caller exit with ``128 + signum``."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _on_stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Route SIGINT/SIGTERM to ``handler`` inside the block; the previous handlers come back after it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python only lets the main thread install handlers; elsewhere the caller keeps control
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: handler(signum))
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)  # None: a handler installed outside Python


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGINT/SIGTERM (a terminal's Ctrl-C reaches them too): the main process
    decides when to stop, and a worker dying first would turn a clean stop into a loader error."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


#: The loss terms a stage can declare: ``contrastive`` NT-Xent (+ cycle, ``loss.cycle``) on temporal pairs of
#: augmented views; ``views`` the reconstruction of the masked t+-delta views (eq. 16); ``masked`` that of the
#: masked, non-augmented anchor (eq. 17).
LOSS_TERMS = ("contrastive", "views", "masked")
#: The model parts (attributes of the model) a stage can train; ``projector`` exists in contrastive families only.
MODEL_PARTS = ("fusion", "projector", "decoder")


#: A loss of a family's own: ``loss(step, batch, stage, alpha, generator) -> {term: value}``, ``total`` the one
#: optimised; the other terms are logged (metrics.csv) as the built-in ones are.
LossFunction = Callable[["Step", dict[str, Tensor], "Stage", float, torch.Generator], dict[str, Tensor]]


@dataclass(frozen=True)
class Stage:
    """What one training stage does: the model parts it ``trains`` (the rest stay frozen) and the loss terms it
    optimises; with ``blend`` the loss is ``alpha * L_c + (1 - alpha) * L_r``, ``alpha = exp(-k * epoch)``.
    Paper section 5: pretrain -> blend -> decoder; or the autoencoder. A family with a loss of its own (BYOL,
    VICReg, ...) gives its stage ``loss`` (a :data:`LossFunction`, or its ``"module:function"`` path); ``losses``
    then names the terms it returns."""

    name: str
    epochs: int
    lr: float
    trains: tuple[str, ...]
    losses: tuple[str, ...]
    blend: bool = False
    loss: LossFunction | str | None = None

    def __post_init__(self) -> None:
        known = set(self.losses) if self.loss is not None else set(LOSS_TERMS)
        unknown = sorted(set(self.trains) - set(MODEL_PARTS)) + sorted(set(self.losses) - known)
        if unknown or not self.trains or not self.losses:
            raise ValueError(f"stage {self.name}: trains {self.trains} of {MODEL_PARTS} and losses {self.losses} of "
                             f"{LOSS_TERMS} (or of its own loss), at least one each")

    @property
    def contrastive(self) -> bool:
        return "contrastive" in self.losses

    @property
    def reconstruct_views(self) -> bool:
        return "views" in self.losses

    @property
    def reconstruct_masked(self) -> bool:
        return "masked" in self.losses

    @property
    def train_encoder(self) -> bool:
        return "fusion" in self.trains


STAGES: dict[str, Callable[[TrainConfig], Stage]] = {
    "pretrain": lambda t: Stage("pretrain", t.epochs_pretrain, t.lr, trains=("fusion", "projector"),
                                losses=("contrastive",)),
    "blend": lambda t: Stage("blend", t.epochs_blend, t.lr, trains=MODEL_PARTS,
                             losses=("contrastive", "views", "masked"), blend=True),
    "decoder": lambda t: Stage("decoder", t.epochs_decoder, t.lr, trains=("decoder",), losses=("masked",)),
    "autoencoder": lambda t: Stage("autoencoder", t.epochs_autoencoder, t.autoencoder_lr, trains=("fusion", "decoder"),
                                   losses=("masked",)),
}
"""The training stages a family lists (``sparta.families.Family.stages``), by name."""


def plan_stages(cfg: Config) -> list[Stage]:
    family = FAMILIES[cfg.method]
    if family.closed_form:
        raise TrainingError(f"method={cfg.method} has no training stages: it is fitted in closed form by "
                            f"{family.fit}")
    return [STAGES[name](cfg.train) for name in family.stages]


def cpu_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[bool, str]:
    """Does this CPU compute bf16 in hardware (AVX512-BF16 or AMX-BF16)? (answer, the evidence).

    Read from the kernel's CPU flags (``/proc/cpuinfo``); torch's ``get_cpu_capability()`` reports the
    vector ISA its own kernels use (``AVX512``), which does not say whether oneDNN has bf16
    instructions. Without those, bf16 is emulated and slower than fp32; where the flags cannot be read
    (not Linux) the answer is no.
    """
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False, "CPU flags unreadable (no /proc/cpuinfo)"
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    if native:
        return True, f"CPU has {' and '.join(native)}"
    return False, "CPU has neither avx512_bf16 nor amx_bf16 (bf16 would be emulated)"


def choose_precision(setting: str, device: torch.device) -> tuple[str, str]:
    """``train.precision`` resolved for ``device``: (precision, why).

    ``auto`` picks bf16 autocast where the hardware computes bf16 natively: a CUDA GPU that supports
    it, or a CPU with avx512_bf16 or AMX. Parity: tests/test_speed_parity.py (loss curves of bf16 and
    fp32 training at micro size) and the quick-size comparison in docs/decisions.md.
    """
    if setting != "auto":
        return setting, f"train.precision={setting}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"auto: {torch.cuda.get_device_name(device)} supports bf16"
        return "fp32", f"auto: {torch.cuda.get_device_name(device)} lacks bf16"
    if device.type == "cpu":
        native, why = cpu_native_bf16()
        return ("bf16" if native else "fp32"), f"auto: {why}"
    return "fp32", f"auto: no bf16 policy for device {device.type}"


def fast_path(cfg: Config, device: torch.device, model: SpartaModel) -> tuple[str, bool]:
    """Apply the fast path the config asks for (``None`` = on for CUDA); return (precision, channels_last).

    Precision: :func:`choose_precision`; the choice and its reason go to the run log. channels_last
    converts the model in place (inputs follow in the trainer); compile compiles the encoder front in
    place (``nn.Module.compile``), so checkpoints keep their parameter names.
    """
    t, cuda = cfg.train, device.type == "cuda"
    precision, why = choose_precision(t.precision, device)
    log.info("precision %s (%s)", precision, why)
    channels_last = cuda if t.channels_last is None else t.channels_last
    if channels_last and not cuda:
        raise TrainingError("train.channels_last=true needs a CUDA device: on CPU, oneDNN computed wrong weight "
                            "gradients for strided 1x1 convolutions in channels_last (torch 2.13, measured); "
                            "leave train.channels_last unset")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if cuda if t.compile is None else t.compile:
        if not cuda:  # inductor builds C++ kernels on CPU: without a compiler it fails at the first step
            compiler = os.environ.get("CXX") or "g++"
            if shutil.which(compiler) is None:
                raise TrainingError(f"train.compile=true on CPU needs a C++ compiler for torch.compile and "
                                    f"{compiler} was not found (set CXX, install g++, or set train.compile=false)")
        # Inductor's layout optimisation turns convolutions channels_last, where oneDNN's CPU weight gradients
        # of strided 1x1 convolutions are wrong (69% relative error, torch 2.13): keep the eager layout on CPU.
        model.fusion.compile(options=None if cuda else {"layout_optimization": False})
        log.info("encoder compiled with torch.compile (train.compile=%s)", t.compile)
    return precision, channels_last


def free_memory(device: torch.device) -> int | None:
    """Bytes ``device`` can still allocate (Linux's MemAvailable for the CPU); None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def check_model_fits(cfg: Config, layout: list[grids.Grid], device: torch.device) -> None:
    """Refuse a model whose parameters alone cannot be trained in ``device``'s free memory, before allocating it.

    The parameters are counted on the meta device (nothing allocated); training holds four float32 copies
    (weights, gradients, Adam's two moments). Activations come on top, so this catches sizes that can never
    fit, such as a stray digit in model.embed_dim or model.width, at once instead of at the first allocation.
    """
    with torch.device("meta"):
        n = sum(p.numel() for p in build_model(cfg, layout).parameters())
    need, free = 16 * n, free_memory(device)
    if free is not None and need > free:
        m = cfg.model
        raise TrainingError(f"the model has {n:.3g} parameters (model.embed_dim={m.embed_dim}, model.width={m.width}, "
                            f"model.decoder_channels={m.decoder_channels}): training needs {need / 1e9:.3g} GB for "
                            f"them, their gradients and Adam's moments, and {device} has {free / 1e9:.3g} GB free; "
                            "choose smaller sizes")


def checkpoint_meta(cfg: Config, store: Store) -> dict:
    """What every checkpoint says about the model: enough to rebuild and check it without the run."""
    return {
        "config": cfg.model_dump(mode="json"),
        "config_digest": cfg.digest(),
        "variables": list(store.variables),
        "channels": list(store.channels),
        "grid": store.grid,
        "layout": [[list(g.channels), g.n_lat, g.n_lon] for g in store.layout],
        "mean": torch.from_numpy(store.mean.copy()),
        "std": torch.from_numpy(store.std.copy()),
        "source": store.source,
    }


def skill_reference(store: Store, max_days: int = 256) -> tuple[grids.Fields, grids.Fields]:
    """Up to ``max_days`` evenly spaced validation days and their monthly climatology of the train split
    (both physical, float32): the yardstick of :class:`SkillProbe`."""
    va, vb = store.split_range("val")
    days = np.unique(np.linspace(va, vb - 1, min(max_days, vb - va)).round().astype(int))
    months = month_index(store.times[days])
    climatology = grids.each(lambda clim: torch.from_numpy(clim[months]), monthly_climatology(store))
    return grids.each(lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32), store.read(days)), climatology


def _loader(cfg: Config, store: Store, split: str, device: torch.device) -> DataLoader:
    """Contrastive batches of ``split``: this process's share, ``train.steps_per_epoch`` (or ``val_steps``) of them."""
    start, stop = store.split_range(split)
    train = split == "train"
    sampler = ContrastiveBatchSampler(
        stop - start, cfg.train.batch_size, cfg.sampler,
        seed=derive_seed(cfg.train.seed, "sampler", split),
        hard_negatives=cfg.sampler.hard_negatives,
        max_batches=cfg.train.steps_per_epoch if train else cfg.train.val_steps,
        rank=dist.rank(), world_size=dist.world_size(),
    )
    return DataLoader(ContrastiveDataset(store, split), batch_sampler=sampler,
                      num_workers=cfg.train.num_workers, pin_memory=device.type == "cuda",
                      persistent_workers=cfg.train.num_workers > 0,
                      worker_init_fn=_ignore_stop_signals if cfg.train.num_workers > 0 else None)


class Step:
    """The model side of one training step: which parameters a stage trains (and through DDP), the precision
    and memory format it runs in, and the loss terms of a batch."""

    def __init__(self, cfg: Config, model: SpartaModel, augmenter: Augmenter | MultiGridAugmenter,
                 device: torch.device, precision: str, channels_last: bool, loss_weights: grids.Fields | None = None):
        """``loss_weights``: each grid's area weights of its latitude rows for the reconstruction loss (None: the
        paper's unweighted mean)."""
        self.cfg, self.model, self.augmenter, self.device = cfg, model, augmenter, device
        self.precision, self.channels_last = precision, channels_last
        self.loss_weights = None if loss_weights is None else grids.each(lambda w: w.float().to(device), loss_weights)
        self.encode_fn, self.decode_fn = model.encode, model.decode  # DDP-wrapped per stage

    def autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def encoder_input(self, x: grids.Fields) -> grids.Fields:
        if not self.channels_last:
            return x
        return grids.each(lambda part: part.contiguous(memory_format=torch.channels_last), x)

    def to_device(self, x: grids.Fields) -> grids.Fields:
        return grids.each(lambda part: part.to(self.device, non_blocking=True), x)

    def terms(self, batch: dict[str, Tensor], stage: Stage, alpha: float, gen: torch.Generator) -> dict[str, Tensor]:
        """Loss terms of one batch; ``total`` is what is optimised."""
        if stage.loss is not None:
            loss = resolve(stage.loss) if isinstance(stage.loss, str) else stage.loss
            with self.autocast():
                return loss(self, batch, stage, alpha, gen)
        anchor = self.to_device(batch["anchor"])
        with self.autocast():
            if not stage.contrastive:
                return self._reconstruction_terms(anchor, stage, gen)
            return self._contrastive_terms(anchor, batch, stage, alpha, gen)

    def _reconstruction_terms(self, anchor: grids.Fields, stage: Stage, gen: torch.Generator) -> dict[str, Tensor]:
        """Decoder-only stage or autoencoder: masked input -> full field."""
        sparse, keep = self.augmenter.mask(anchor, gen, self.cfg.augment.mask_low, self.cfg.augment.mask_high)
        with nullcontext() if stage.train_encoder else torch.no_grad():
            h = self.encode_fn(self.encoder_input(sparse), keep)
        recon = reconstruction_loss(_float(self.decode_fn(h)), anchor, self.loss_weights)
        return {"recon": recon, "total": recon, "embed_std": torch.tensor(embedding_std(h.detach().float()))}

    def _contrastive_terms(self, anchor: grids.Fields, batch: dict[str, Tensor], stage: Stage, alpha: float,
                           gen: torch.Generator) -> dict[str, Tensor]:
        """NT-Xent (+ cycle) on the anchor's view and the masked t+-delta views; the blend stage adds their
        reconstruction and the masked anchor's, weighted by ``alpha``."""
        cfg, aug, model = self.cfg, self.augmenter, self.model
        minus, plus = self.to_device(batch["minus"]), self.to_device(batch["plus"])
        aligned = stage.reconstruct_views and cfg.loss.recon_target == "aligned"
        view_t = aug.view(anchor, gen, masked=False)
        if aligned:
            *view_m, target_m = aug.view(minus, gen, masked=True, with_target=True)
            *view_p, target_p = aug.view(plus, gen, masked=True, with_target=True)
        else:
            view_m, target_m = aug.view(minus, gen, masked=True), minus
            view_p, target_p = aug.view(plus, gen, masked=True), plus
        inputs = [view_t, tuple(view_m), tuple(view_p)]  # (fields, observation mask) each
        if stage.reconstruct_masked:
            inputs.append(aug.mask(anchor, gen, cfg.augment.mask_low, cfg.augment.mask_high))
        # one pass: norms see one batch, the encoder runs once
        x, keep = observed_cat(inputs)
        h = self.encode_fn(self.encoder_input(x), keep)
        n = grids.length(anchor)
        h_t, h_m, h_p = h[:n], h[n:2 * n], h[2 * n:3 * n]
        z = model.project(h[: 3 * n]).float()
        terms = {"nt_xent": temporal_contrastive_loss(z[:n], z[n:2 * n], z[2 * n:], cfg.loss.temperature)}
        contrastive = terms["nt_xent"]
        if cfg.loss.cycle:
            terms["cycle"] = cycle_loss(h_m.float(), h_t.float(), h_p.float())
            contrastive = contrastive + cfg.loss.cycle_weight * terms["cycle"]
        if stage.reconstruct_views:
            recon = _float(model.decode(torch.cat([h_m, h_p])))
            weights = self.loss_weights
            terms["recon_views"] = (reconstruction_loss(grids.take(recon, slice(None, n)), target_m, weights)
                                    + reconstruction_loss(grids.take(recon, slice(n, None)), target_p, weights))
            contrastive = contrastive + terms["recon_views"]
        if stage.reconstruct_masked:
            terms["recon"] = reconstruction_loss(_float(model.decode(h[3 * n:])), anchor, self.loss_weights)
            terms["total"] = blended_loss(contrastive, terms["recon"], alpha)
        else:
            terms["total"] = contrastive
        terms["embed_std"] = torch.tensor(embedding_std(h_t.detach().float()))
        return terms

    def trainable(self, stage: Stage) -> list[dict]:
        """The stage's optimiser parameter groups; the linear paths at ``train.linear_lr_scale`` x lr."""
        model = self.model
        modules = [m for m in (getattr(model, part, None) for part in stage.trains) if m is not None]
        for p in model.parameters():
            p.requires_grad_(False)
        params = [p for m in modules for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        linear = {id(p) for p in model.linear_path_parameters()}
        groups = [{"params": [p for p in params if id(p) not in linear]},
                  {"params": [p for p in params if id(p) in linear], "lr": stage.lr * self.cfg.train.linear_lr_scale}]
        return [g for g in groups if g["params"]]

    def wrap(self, stage: Stage) -> None:
        """With several processes, route the stage's trained part through DistributedDataParallel.

        DDP registers the parameters that require grad when it is built, so it is rebuilt per
        stage; the decoder-only stage wraps the decoder (the frozen encoder runs without grad).
        """
        if dist.world_size() == 1:
            return
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        if stage.train_encoder:
            self.encode_fn = DistributedDataParallel(self.model, device_ids=device_ids)
            self.decode_fn = self.model.decode
        else:
            self.encode_fn = self.model.encode
            self.decode_fn = DistributedDataParallel(self.model.decoder, device_ids=device_ids)

    def set_mode(self, stage: Stage, training: bool) -> None:
        self.model.train(training)
        if not stage.train_encoder:  # frozen encoder: its norms use their running statistics
            self.model.fusion.eval()


class SkillProbe:
    """Does the decoder know the weather? Complete validation days (:func:`skill_reference`, normalised once: the
    same days every epoch) through encode -> decode, in physical units, from the complete input and with
    ``HIDDEN`` of every day's points hidden (one fixed seeded mask per day, the same every epoch)."""

    HIDDEN = 0.7  # the fraction the downstream tasks' masked inputs hide (downstream.condition_mask's default)

    def __init__(self, store: Store, augmenter: Augmenter | MultiGridAugmenter):
        self.store = store
        self.days, self.climatology = skill_reference(store)
        inputs = grids.each(torch.from_numpy, store.normalise(grids.each(torch.Tensor.numpy, self.days)))
        masked = augmenter.mask(inputs, generator(derive_seed(0, "skill-probe-mask")), self.HIDDEN, self.HIDDEN)
        self.inputs = {"": (augmenter.encoder_input(inputs), None), f"hidden{round(100 * self.HIDDEN)}_": masked}

    @torch.no_grad()
    def measure(self, step: Step) -> dict[str, float]:
        """Pooled RRMSE as a fraction of the monthly climatology's and the mean and minimum over channels of
        the zonal-anomaly (eddy) pattern correlation (0 for a decoder that paints zonal-mean bands), from the
        complete input; per channel the same two numbers from complete (``skill_<channel>_*``) and masked
        (``skill_hidden70_<channel>_*``) inputs: the learning curve of every variable."""
        step.model.eval()
        row: dict[str, float] = {}
        for tag, (x, keep) in self.inputs.items():
            x, keep = step.to_device(x), None if keep is None else step.to_device(keep)
            with step.autocast():
                fields = _float(step.model.decode(step.model.encode(step.encoder_input(x), keep)))
            pred = self.store.denormalise(grids.each(lambda part: part.cpu(), fields))
            ratio = rrmse(pred, self.days, per_channel=True) / rrmse(self.climatology, self.days, per_channel=True)
            eddy = eddy_correlation(pred, self.days)
            if not tag:
                row |= {"skill_rrmse_vs_climatology": float(rrmse(pred, self.days) / rrmse(self.climatology, self.days)),
                        "skill_eddy_r_mean": float(eddy.mean()), "skill_eddy_r_min": float(eddy.min())}
            for name, r, e in zip(self.store.channels, ratio.tolist(), eddy.tolist(), strict=True):
                row |= {f"skill_{tag}{name}_rmse_vs_climatology": r, f"skill_{tag}{name}_eddy_r": e}
        return row


def _warn_if_unskilled(history: list[dict], run: Run) -> None:
    last = next((row for row in reversed(history) if "skill_rrmse_vs_climatology" in row), None)
    if last is not None and last["skill_rrmse_vs_climatology"] >= 1.0:
        log.warning("the decoder of %s is no better than climatology on validation days (RRMSE %.2fx "
                    "climatology's, eddy correlation %.2f): downstream scores will measure a mean-field "
                    "decoder; train longer or see docs/decisions.md (quick preset)", run.path,
                    last["skill_rrmse_vs_climatology"], last["skill_eddy_r_mean"])


def _finite(terms: dict[str, Tensor], stage: Stage, epoch: int, on_nonfinite: str) -> bool:
    """Are all loss terms finite on every process? Otherwise skip the step (``train.on_nonfinite=skip``) or stop."""
    bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
    if not dist.any_true(bool(bad)):  # all processes skip or stop together, or DDP would deadlock
        return True
    terms_text = ", ".join(bad) or "on another process"
    message = f"non-finite loss in stage {stage.name}, epoch {epoch + 1}: term(s) {terms_text}"
    if on_nonfinite == "stop":
        raise TrainingError(message + "; the last good checkpoint is kept (try a lower train.lr, "
                            "or train.on_nonfinite=skip)")
    log.warning("%s; step skipped", message)
    return False


def _cpu_state(model: SpartaModel) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


class Record:
    """What training has done so far: the history rows (one per epoch, the last one the epoch in last.pt), the
    best validation loss of the final stage, and the checkpoints that hold them."""

    def __init__(self, run: Run, meta: dict, stages: list[Stage]):
        self.run, self.meta, self.stages = run, meta, stages
        self.history: list[dict] = []
        self.best_val = math.inf
        self.best_is_start = False  # best.pt is the model before any training (the EOF start)

    def save(self, model: SpartaModel, stage_idx: int, epoch: int, optimizer, scheduler, improved: bool) -> None:
        if not dist.is_main():
            return
        common = {**self.meta, "model": _cpu_state(model), "stage_index": stage_idx, "stage": self.stages[stage_idx].name,
                  "epoch": epoch}
        if improved:  # best first: last.pt is the commit point a resume starts from
            save_checkpoint(self.run.best, common)
            self.best_is_start = False
        save_checkpoint(self.run.last, {**common, "optimizer": optimizer.state_dict(),
                                        "scheduler": scheduler.state_dict(), "history": self.history,
                                        "best_val": self.best_val, "best_is_start": self.best_is_start})

    def keep_start(self, model: SpartaModel, val: float) -> None:
        """best.pt := the untrained model, with its validation loss ``val`` as the best to beat."""
        self.best_val, self.best_is_start = val, True
        if dist.is_main():
            save_checkpoint(self.run.best, {**self.meta, "model": _cpu_state(model), "stage_index": -1,
                                            "stage": "start", "epoch": -1})

    def restore(self, model: SpartaModel, digest: str) -> tuple[int, int, dict | None]:
        """Load last.pt; return (stage index, next epoch, optimizer+scheduler states for that stage)."""
        state = load_checkpoint(self.run.require_last(), expect_digest=digest)
        model.load_state_dict(state["model"])
        self.history = list(state["history"])
        self.best_val = state["best_val"]
        self.best_is_start = bool(state.get("best_is_start", False))
        stage_idx, epoch = state["stage_index"], state["epoch"] + 1
        if epoch >= self.stages[stage_idx].epochs:
            return stage_idx + 1, 0, None
        return stage_idx, epoch, {"optimizer": state["optimizer"], "scheduler": state["scheduler"]}

    def interrupted(self, where: str, signum: int) -> TrainingInterrupted:
        name = signal.Signals(signum).name
        if self.history:  # the last history row is the epoch in last.pt: rows are appended just before saving
            done = self.history[-1]
            state = (f"{self.run.last} holds stage {done['stage']} epoch {done['epoch']}; "
                     f"resume with `sparta train --resume {self.run.path}`")
        else:
            state = (f"no epoch was complete, so there is no checkpoint yet; `sparta train --resume {self.run.path}` "
                     "trains it from the start with its saved config")
        return TrainingInterrupted(f"{name}: interrupted {where}; {state}", signum)


class StageTraining:
    """One stage of :class:`Trainer`: its optimiser, plateau scheduler and loss scaler, and the loop over its
    epochs (train, validate, record, checkpoint)."""

    def __init__(self, trainer: Trainer, stage_idx: int, states: dict | None):
        """``states``: the optimiser and scheduler of the stage's last saved epoch, when resuming inside it."""
        self.trainer, self.index, self.stage = trainer, stage_idx, trainer.stages[stage_idx]
        params = trainer.step.trainable(self.stage)
        trainer.step.wrap(self.stage)
        self.optimizer = torch.optim.Adam(params, lr=self.stage.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=trainer.cfg.train.plateau_factor, patience=trainer.cfg.train.plateau_patience)
        self.scaler = torch.amp.GradScaler(trainer.device.type, enabled=trainer.step.precision == "fp16")
        if states is not None:
            self.optimizer.load_state_dict(states["optimizer"])
            self.scheduler.load_state_dict(states["scheduler"])

    def run(self, first_epoch: int) -> None:
        trainer, stage, record = self.trainer, self.stage, self.trainer.record
        for epoch in range(first_epoch, stage.epochs):
            tic = time.perf_counter()
            train, val = self._epoch(epoch)
            self.scheduler.step(val["total"])
            row = {"stage": stage.name, "epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                   "alpha": self._alpha(epoch) if stage.blend else None,
                   **{f"train_{k}": v for k, v in train.items()}, **{f"val_{k}": v for k, v in val.items()},
                   **(trainer.skill.measure(trainer.step) if stage.reconstruct_masked else {}),
                   "seconds": round(time.perf_counter() - tic, 2)}
            record.history.append(row)
            improved = self.index == len(trainer.stages) - 1 and val["total"] < record.best_val
            if improved:
                record.best_val = val["total"]
            record.save(trainer.step.model, self.index, epoch, self.optimizer, self.scheduler, improved)
            if dist.is_main():
                trainer.run.write_metrics(record.history)
                log.info("%s epoch %d/%d  train %.4f  val %.4f", stage.name, epoch + 1, stage.epochs,
                         train["total"], val["total"])
            if dist.any_true(trainer.stop_signal is not None):  # during validation or saving: epoch complete
                raise record.interrupted(f"after stage {stage.name} epoch {epoch + 1}",
                                         trainer.stop_signal or signal.SIGTERM)

    def _alpha(self, epoch: int) -> float:
        return blend_alpha(epoch, self.trainer.cfg.loss.alpha_decay) if self.stage.blend else 1.0

    def _epoch(self, epoch: int) -> tuple[dict, dict]:
        trainer, stage, step = self.trainer, self.stage, self.trainer.step
        alpha = self._alpha(epoch)
        seed = derive_seed(trainer.cfg.train.seed, stage.name, epoch)
        torch.manual_seed(seed)  # dropout
        gen = generator(derive_seed(seed, "rank", dist.rank()) if dist.world_size() > 1 else seed)
        train_loader = trainer.loaders["train"]
        train_loader.batch_sampler.set_epoch(derive_seed(seed, "order"))
        step.set_mode(stage, True)
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        bar = tqdm(train_loader, desc=f"{stage.name} {epoch + 1}/{stage.epochs}", leave=False,
                   disable=not trainer.progress, dynamic_ncols=True)
        for batch in bar:
            terms = step.terms(batch, stage, alpha, gen)
            if _finite(terms, stage, epoch, trainer.cfg.train.on_nonfinite):
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(terms["total"]).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                for k, v in terms.items():
                    sums[k] += float(v.detach())
                steps += 1
                bar.set_postfix(loss=f"{float(terms['total'].detach()):.4f}")
            if dist.any_true(trainer.stop_signal is not None):  # every process stops at the same step
                # Abandon the epoch: saving it would make the resume point a partial epoch, which
                # resume could not continue bit-for-bit. last.pt keeps the last complete epoch.
                bar.close()
                raise trainer.record.interrupted(f"in stage {stage.name} epoch {epoch + 1}",
                                                 trainer.stop_signal or signal.SIGTERM)
        if steps == 0:
            raise TrainingError(f"stage {stage.name}, epoch {epoch + 1}: no finite training step; "
                                "check the data or lower train.lr")
        train = dist.all_mean({k: v / steps for k, v in sums.items()})
        return train, dist.all_mean(trainer.validate(stage, alpha))


class Trainer:
    """Every stage a family lists (:func:`plan_stages`), from the resume point when resuming, with
    :class:`StageTraining`; SIGINT/SIGTERM stop it at the next step."""

    def __init__(self, run: Run, store: Store, progress: bool = True, resume: bool = False):
        """``resume``: :meth:`fit` continues the run from last.pt, which holds every weight, so the EOF start
        is not fitted."""
        self.run = run
        self.resume = resume
        self.cfg = cfg = run.config
        self.store = store
        self.progress = progress and dist.is_main()
        self.device = resolve_device(cfg.train.device)
        self.stages = plan_stages(cfg)
        augmenter = build_augmenter(cfg.augment, store.layout)
        check_model_fits(cfg, store.layout, self.device)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg, store.layout)
        if cfg.model.linear_init == "eof" and not resume:
            model.start_from_eofs(fit_train_eofs(store, cfg.model.embed_dim))
        if cfg.model.mean_field and not resume:
            model.decoder.start_from_mean(train_mean_field(store))
        model.to(self.device)
        if dist.world_size() > 1:  # batch statistics over the global batch, as one process would see it
            dist.convert_batchnorm(model)
        weights = [lat_weights(torch.as_tensor(part.lat)) for part in store.parts] if cfg.loss.area_weighted else None
        self.step = Step(cfg, model, augmenter, self.device, *fast_path(cfg, self.device, model),
                         weights if weights is None or len(weights) > 1 else weights[0])
        self.record = Record(run, checkpoint_meta(cfg, store), self.stages)
        if hasattr(model.fusion, "adjacency") and dist.is_main():  # the variable graph a fusion runs over
            plot_adjacency(model.fusion.adjacency.cpu().numpy(), store.channels, run.figures / "graph.png")
        self.skill = SkillProbe(store, self.step.augmenter)
        self.stop_signal: int | None = None  # set by SIGINT/SIGTERM during fit
        self.loaders = {split: _loader(cfg, store, split, self.device) for split in ("train", "val")}

    def fit(self) -> Run:
        """Train every stage (from the resume point, when resuming); SIGINT/SIGTERM raise
        :class:`TrainingInterrupted` at the next step."""
        self.stop_signal = None
        with _on_stop_signals(self._request_stop):
            return self._fit()

    def _request_stop(self, signum: int) -> None:
        if self.stop_signal is not None:
            raise KeyboardInterrupt  # a second signal stops at once; last.pt is only ever replaced atomically
        self.stop_signal = signum
        log.warning("%s received: stopping after the current step (send it again to stop at once)",
                    signal.Signals(signum).name)

    @torch.no_grad()
    def validate(self, stage: Stage, alpha: float) -> dict[str, float]:
        """``stage``'s loss terms on the validation split, with the same masks and views every time, so their
        changes reflect the model only."""
        seed = derive_seed(self.cfg.train.seed, "validation")
        gen = generator(seed)
        self.loaders["val"].batch_sampler.set_epoch(seed)
        self.step.model.eval()
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        for batch in self.loaders["val"]:
            for k, v in self.step.terms(batch, stage, alpha, gen).items():
                sums[k] += float(v)
            steps += 1
        return {k: v / max(steps, 1) for k, v in sums.items()}

    def _keep_the_start(self) -> None:
        """A model started from the EOFs must never end worse than that start: its final stage's validation
        loss at the start becomes the best to beat, and best.pt the start, until an epoch of that stage
        beats it (so where training only degrades the EOF reconstruction, the EOF start is what is kept)."""
        val = dist.all_mean(self.validate(self.stages[-1], 1.0))
        self.record.keep_start(self.step.model, val["total"])
        log.info("EOF start: validation %s %.4f, best.pt until an epoch of stage %s beats it",
                 self.stages[-1].name, val["total"], self.stages[-1].name)

    def _fit(self) -> Run:
        start_stage, start_epoch, states = (self.record.restore(self.step.model, self.cfg.digest()) if self.resume
                                            else (0, 0, None))
        if self.resume:
            log.info("resuming %s at stage %d, epoch %d", self.run.path, start_stage, start_epoch + 1)
        elif self.cfg.model.linear_init == "eof":
            self._keep_the_start()
        for stage_idx in range(start_stage, len(self.stages)):
            resumed = stage_idx == start_stage
            StageTraining(self, stage_idx, states if resumed else None).run(start_epoch if resumed else 0)
        if dist.is_main():
            if not self.run.best.exists():
                raise CheckpointError(f"training of {self.run.path} finished without a best checkpoint; "
                                      "the final stage needs at least one epoch")
            if self.record.best_is_start:
                log.warning("no epoch of stage %s beat the EOF start on the validation split (%.4f): best.pt "
                            "is the EOF start", self.stages[-1].name, self.record.best_val)
            plot_training_curves(self.record.history, self.run.figures)
            _warn_if_unskilled(self.record.history, self.run)
            self.run.mark_complete()
        return self.run


def train_run(run: Run, store: Store, progress: bool = True, resume: bool = False) -> Run:
    """Train ``run``'s model: the networks with :class:`Trainer`; a closed-form family (the EOF baseline) with its
    ``fit``, on the main process (``resume`` fits it again, deterministically)."""
    family = FAMILIES[run.config.method]
    if family.closed_form:
        return resolve(family.fit)(run, store) if dist.is_main() else run
    return Trainer(run, store, progress=progress, resume=resume).fit()


def train_mean_field(store: Store) -> grids.Fields:
    """The normalised time mean of the store's train split, (C, n_lat, n_lon) per grid, float32."""
    start, stop = store.split_range("train")
    fields = store.normalise(store.read(slice(start, stop)))
    return grids.each(lambda part: torch.as_tensor(np.asarray(part).mean(axis=0), dtype=torch.float32), fields)


def fit_train_eofs(store: Store, embed_dim: int) -> EOFModel:
    """The leading ``embed_dim`` area-weighted EOFs of the store's train split (closed form)."""
    start, stop = store.split_range("train")
    log.info("fitting %d EOFs to the %d train days of %s", embed_dim, stop - start, store.path)
    return fit_eof(store.normalise(store.read(slice(start, stop))), store.layout, embed_dim,
                   lats=[part.lat for part in store.parts])


def fit_eof_run(run: Run, store: Store) -> Run:
    """The EOF/PCA baseline as a run: the leading ``model.embed_dim`` EOFs of the train split.

    Written like a finished training run: best.pt and last.pt (the same model, the usual meta),
    metrics.csv with one row (explained variance: the fraction of the train split's area-weighted
    variance the EOFs capture, all of them and EOF 1; train/val reconstruction RRMSE in %, physical
    units, complete days), figures/eof_spectrum.png, and COMPLETE.
    """
    cfg, tic = run.config, time.perf_counter()
    model = fit_train_eofs(store, cfg.model.embed_dim)
    ratio = model.explained_variance / model.total_variance.clamp(min=torch.finfo(torch.float32).tiny)
    row = {"stage": "eof", "epoch": 1, "explained_variance": float(ratio.sum()),
           "explained_variance_eof1": float(ratio[0]), "train_rrmse": split_rrmse(model, store, "train"),
           "val_rrmse": split_rrmse(model, store, "val"), "seconds": round(time.perf_counter() - tic, 2)}
    common = {**checkpoint_meta(cfg, store), "model": dict(model.state_dict()), "stage_index": 0, "stage": "eof",
              "epoch": 0}
    save_checkpoint(run.best, common)
    save_checkpoint(run.last, {**common, "history": [row], "best_val": row["val_rrmse"]})
    run.write_metrics([row])
    plot_eof_spectrum(ratio.numpy(), run.figures / "eof_spectrum.png")
    run.mark_complete()
    log.info("EOFs explain %.1f%% of the train variance; reconstruction RRMSE train %.3f%%, val %.3f%%",
             100 * row["explained_variance"], row["train_rrmse"], row["val_rrmse"])
    return run


def _float(x: grids.Fields) -> grids.Fields:
    return grids.each(lambda part: part.float(), x)
