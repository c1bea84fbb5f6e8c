"""Model families (``method``): what each is and how it is built and trained, readable without torch.

Config validation, ``--help``, run names and labels read :data:`FAMILIES`; the model's constructor and, for a
closed-form family, its fit are named as ``"module:function"`` and imported only when used. A new family is
one module with its model (``encode``/``decode``; a ``build(cfg, layout)`` function) and one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    """``stages``: the training stages (``sparta.training.STAGES``) a network family runs, in order; a
    closed-form family has none and names its ``fit(run, store) -> run`` instead. ``label`` names a run in
    tables (``{fusion}`` is filled in); ``embedding``: the embedding's long name in ``sparta embed`` output;
    ``hidden``: how hidden points enter its encoder."""

    name: str
    label: str
    description: str
    build: str
    stages: tuple[str, ...] = ()
    fit: str | None = None
    embedding: str = "embedding h"
    hidden: str = "masked points are 0"

    @property
    def closed_form(self) -> bool:
        """Fitted in closed form: no encoder network, no views, any grid."""
        return self.fit is not None

    @property
    def has_fusion(self) -> bool:
        """Its encoder front is chosen by ``model.fusion`` (a contrastive family)."""
        return "pretrain" in self.stages

    def run_label(self, fusion: str) -> str:
        return self.label.format(fusion=fusion)

    def builder(self) -> Callable[..., Any]:
        return resolve(self.build)


def resolve(path: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function (imported now)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sparta", "SPARTA ({fusion})", "contrastive pretraining, blend and decoder stages",
           "sparta.models.sparta:build_sparta", stages=("pretrain", "blend", "decoder"), embedding="sparta embedding h"),
    Family("autoencoder", "Autoencoder", "the autoencoder baseline: the same encoder and decoder, reconstruction only",
           "sparta.models.sparta:build_autoencoder", stages=("autoencoder",), embedding="autoencoder embedding h"),
    Family("pca", "EOF/PCA (linear)", "the EOF/PCA baseline: the train split's leading EOFs, fitted in closed form",
           "sparta.models.eof:build_eof", fit="sparta.training:fit_eof_run",
           embedding="standardised EOF coefficients", hidden="hidden points are left out of the least-squares fit"),
)}
"""The model families, by ``method`` name."""
