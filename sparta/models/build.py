"""Models from configs and checkpoints: the device, an untrained model of a config, a trained one rebuilt from a
checkpoint alone (frozen, without executing pickled code). Training, inference and evaluation all build
models here."""

from __future__ import annotations

from pathlib import Path

import torch

from sparta.checkpoint import CheckpointError, load_checkpoint
from sparta.config import Config, validate
from sparta.errors import UserError
from sparta.families import FAMILIES
from sparta.grids import Grid


class DeviceError(UserError, RuntimeError):
    """The requested device is not available."""


def resolve_device(choice: str | torch.device) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if str(choice) == "cuda" and not torch.cuda.is_available():
        raise DeviceError("train.device=cuda but no CUDA device is available; use train.device=auto or cpu")
    if str(choice) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def build_model(cfg: Config, layout: list[Grid]) -> torch.nn.Module:
    """The untrained model ``cfg`` describes for fields of ``layout``: its family's ``build``."""
    return FAMILIES[cfg.method].builder()(cfg, layout)


def load_trained(checkpoint: str | Path, device: str | torch.device = "cpu",
                 expect_digest: str | None = None) -> tuple[torch.nn.Module, Config, dict]:
    """Rebuild a trained model from a checkpoint alone: frozen, in eval mode, on ``device``.

    ``expect_digest`` (a run's ``Config.digest()``) refuses a checkpoint of another model/config.
    """
    state = load_checkpoint(checkpoint, expect_digest=expect_digest)
    cfg = validate(state["config"])
    if "layout" not in state:
        raise CheckpointError(f"checkpoint '{checkpoint}' names no grid layout (written by an older sparta): "
                              "train again")
    layout = [Grid(tuple(channels), n_lat, n_lon) for channels, n_lat, n_lon in state["layout"]]
    model = build_model(cfg, layout)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint '{checkpoint}' does not match the model its config describes: "
                              f"{str(err).splitlines()[0]}") from None
    model.to(device).eval().requires_grad_(False)
    return model, cfg, state
