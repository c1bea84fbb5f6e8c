"""The models SPARTA compares: one registry of the variants of ``sparta reproduce`` (name, report label,
method, config overrides, figure colour), and the label of any single run.

A new variant is one entry here. Figures colour a model by its label (:func:`color`), so a model
looks the same in every figure whether it is named by its report label or by its run label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sparta.families import FAMILIES


@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # row label in the paper's tables
    method: str  # sparta, autoencoder or pca
    overrides: list[str] = field(default_factory=list)
    color: str = "black"


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("autoencoder", "Autoencoder", "autoencoder", [], "tab:orange"),
    Variant("pca", "EOF/PCA (linear)", "pca", [], "tab:red"),
    Variant("sparta", "SPARTA - Early-Fusion HN + Cycle", "sparta", [], "tab:blue"),
    Variant("sparta-none", "SPARTA - Early-Fusion", "sparta", ["sampler.hard_negatives=false", "loss.cycle=false"],
            "tab:cyan"),
    Variant("sparta-cycle", "SPARTA - Early-Fusion Cycle", "sparta", ["sampler.hard_negatives=false"], "tab:olive"),
    Variant("sparta-hn", "SPARTA - Early-Fusion HN", "sparta", ["loss.cycle=false"], "tab:brown"),
    # late fusion cannot start from EOFs (model.linear_init=eof is one early-fusion projection)
    Variant("sparta-attention", "SPARTA - Late-Fusion, Self-Attention", "sparta",
            ["model.fusion=attention", "model.linear_init=random"], "tab:green"),
    Variant("sparta-gnn", "SPARTA - Late-Fusion, GNN", "sparta", ["model.fusion=gnn", "model.linear_init=random"],
            "tab:purple"),
)}


def run_label(method: str, fusion: str) -> str:
    """A single run's label in its own tables and figures: Autoencoder, EOF/PCA (linear) or SPARTA (<fusion>)."""
    return FAMILIES[method].run_label(fusion)


def variant_run_label(v: Variant) -> str:
    """The label a run of variant ``v`` has on its own (the ablations share SPARTA (early))."""
    fusion = next((o.partition("=")[2] for o in v.overrides if o.startswith("model.fusion=")), "early")
    return run_label(v.method, fusion)


def color(label: str) -> str | None:
    """The fixed colour of a variant's report label or run label (the first variant's with that run label);
    None for other names."""
    key = label.lower()
    for v in VARIANTS.values():
        if key == v.label.lower():
            return v.color
    for v in VARIANTS.values():
        if key in (variant_run_label(v).lower(), variant_run_label(v).lower().removesuffix(" (linear)")):
            return v.color
    return None
