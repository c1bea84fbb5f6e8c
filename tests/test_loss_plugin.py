"""A model family that brings its own loss, added in this file alone: an autoencoder whose embeddings are pulled
towards 0 (an L2 penalty on h beside the reconstruction). The trainer runs it, logs its terms and checkpoints it
with no other change."""

from __future__ import annotations

import csv

import pytest
import torch

from sparta.config import load_config
from sparta.families import FAMILIES, Family
from sparta.losses import reconstruction_loss
from sparta.runs import Run
from sparta.training import STAGES, Stage, Trainer

PENALTY = 0.1
calls = []


def penalised_reconstruction(step, batch, stage, alpha, gen) -> dict[str, torch.Tensor]:
    anchor = step.to_device(batch["anchor"])
    h = step.encode_fn(step.encoder_input(anchor), None)
    recon = reconstruction_loss(step.decode_fn(h).float(), anchor)
    latent_l2 = h.float().pow(2).mean()
    calls.append(float(latent_l2.detach()))
    return {"recon": recon, "latent_l2": latent_l2, "total": recon + PENALTY * latent_l2}


@pytest.fixture
def penalised_family():
    STAGES["penalised"] = lambda t: Stage("penalised", t.epochs_autoencoder, t.autoencoder_lr,
                                          trains=("fusion", "decoder"), losses=("recon", "latent_l2"),
                                          loss=penalised_reconstruction)
    FAMILIES["penalised"] = Family("penalised", "Penalised autoencoder", "an autoencoder with an L2 penalty on h",
                                   "sparta.models.sparta:build_autoencoder", stages=("penalised",))
    yield
    del STAGES["penalised"], FAMILIES["penalised"]


def test_a_family_with_its_own_loss_trains_and_logs_its_terms(tmp_path, micro_store, penalised_family):
    cfg = load_config("micro", [f"data.store={micro_store.path}", "train.epochs_autoencoder=2"], method="penalised")
    calls.clear()
    run = Trainer(Run.create(cfg, tmp_path / "run"), micro_store, progress=False).fit()
    assert calls and all(v > 0 for v in calls)  # the family's loss computed every training and validation step
    with open(run.path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["stage"] for r in rows] == ["penalised", "penalised"]
    for row in rows:
        recon, l2, total = (float(row[f"train_{k}"]) for k in ("recon", "latent_l2", "total"))
        # epoch means of the terms are linear in them; each step's total is a float32 sum (relative rounding
        # ~6e-8), and metrics.csv keeps ~16 digits, so 1e-5 leaves two orders of magnitude on any machine
        assert total == pytest.approx(recon + PENALTY * l2, rel=1e-5)
    assert (run.path / "checkpoints" / "best.pt").exists()


def test_its_own_loss_names_its_terms():
    with pytest.raises(ValueError, match="at least one each"):
        Stage("bad", 1, 1e-3, trains=("decoder",), losses=(), loss=penalised_reconstruction)
    Stage("own", 1, 1e-3, trains=("decoder",), losses=("anything",), loss=penalised_reconstruction)  # names are its own
