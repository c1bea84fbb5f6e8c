"""A training stage declares what it trains and which loss terms it optimises: this file adds a family whose one
stage trains the decoder on a frozen random encoder, and the trainer runs it with no other change."""

from __future__ import annotations

import pytest
import torch

from sparta.config import load_config
from sparta.families import FAMILIES, Family
from sparta.runs import Run
from sparta.training import STAGES, Stage, Trainer, plan_stages


@pytest.fixture
def decoder_probe_family():
    STAGES["decoder_probe"] = lambda t: Stage("decoder_probe", t.epochs_autoencoder, t.autoencoder_lr,
                                              trains=("decoder",), losses=("masked",))
    FAMILIES["decoder_probe"] = Family("decoder_probe", "Decoder probe", "a decoder trained on a random encoder",
                                       "sparta.models.sparta:build_autoencoder", stages=("decoder_probe",))
    yield
    del STAGES["decoder_probe"], FAMILIES["decoder_probe"]


def test_a_declared_stage_trains_only_its_parts(tmp_path, micro_store, decoder_probe_family):
    cfg = load_config("micro", [f"data.store={micro_store.path}", "train.epochs_autoencoder=2"], method="decoder_probe")
    assert [(s.name, s.trains, s.losses) for s in plan_stages(cfg)] == [("decoder_probe", ("decoder",), ("masked",))]
    trainer = Trainer(Run.create(cfg, tmp_path / "run"), micro_store, progress=False)
    model = trainer.step.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.fit()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert changed and all(name.startswith("decoder.") for name in changed)


def test_a_stage_names_known_parts_and_terms():
    with pytest.raises(ValueError, match="trains \\('encoder',\\) of .*losses \\('masked',\\)"):
        Stage("bad", 1, 1e-3, trains=("encoder",), losses=("masked",))
    with pytest.raises(ValueError, match="at least one each"):
        Stage("bad", 1, 1e-3, trains=("decoder",), losses=())
