"""Model families are a registry: a new one is a module with its model and one FAMILIES entry."""

from __future__ import annotations

import torch
from torch import nn

from sparta.config import load_config
from sparta.families import FAMILIES, Family
from sparta.grids import Grid
from sparta.models.build import build_model
from sparta.runs import Run
from sparta.training import STAGES, plan_stages
from sparta.variants import run_label


class RandomProjection(nn.Module):
    """A family no file of the package knows: a fixed random linear map of the flattened fields, and its
    least-squares inverse."""

    def __init__(self, embed_dim: int, layout: list[Grid]) -> None:
        super().__init__()
        n = sum(len(g.channels) * g.n_lat * g.n_lon for g in layout)
        self.register_buffer("weight", torch.randn(embed_dim, n, generator=torch.Generator().manual_seed(0)) / n**0.5)
        self.shape = (len(layout[0].channels), layout[0].n_lat, layout[0].n_lon)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return (h @ torch.linalg.pinv(self.weight).T).view(len(h), *self.shape)


def build_random_projection(cfg, layout):
    return RandomProjection(cfg.model.embed_dim, layout)


def test_a_new_family_is_one_registry_entry(monkeypatch):
    monkeypatch.setitem(FAMILIES, "randproj", Family(
        "randproj", "Random projection", "a fixed random linear map", f"{__name__}:build_random_projection",
        fit="sparta.training:fit_eof_run"))
    cfg = load_config("micro", method="randproj")  # validates against the live table
    model = build_model(cfg, [Grid(("t2m", "z850"), 32, 64)])
    assert isinstance(model, RandomProjection) and model.encode(torch.zeros(3, 2, 32, 64)).shape == (3, 16)
    assert run_label("randproj", "early") == "Random projection"
    assert Run.default_path(cfg).name.startswith("randproj-micro-")
    assert not FAMILIES["randproj"].has_fusion


def test_the_shipped_families():
    assert list(FAMILIES) == ["sparta", "autoencoder", "pca"]
    assert [s.name for s in plan_stages(load_config("micro"))] == ["pretrain", "blend", "decoder"]
    assert [s.name for s in plan_stages(load_config("micro", method="autoencoder"))] == ["autoencoder"]
    assert all(set(f.stages) <= set(STAGES) for f in FAMILIES.values())
    assert FAMILIES["pca"].closed_form and not FAMILIES["sparta"].closed_form
    assert run_label("sparta", "gnn") == "SPARTA (gnn)" and run_label("pca", "early") == "EOF/PCA (linear)"
