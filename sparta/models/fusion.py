"""Encoder fronts that map a multi-variable field x (B, C, H, W) to one embedding h (B, embed_dim).

Early fusion runs one ResNet-18 over all channels. Late fusion runs one ResNet-18 per variable and
fuses the C variable embeddings with self-attention or with a graph-attention layer over a fixed
graph of physically related variables. Variables are identified by channel short NAME (``t2m``,
``z850``), never by position, so a graph stays right when the variable list changes.

Adjacency convention: ``adj[i, j]`` is True when node i receives a message from node j (row = target,
column = source); every node has a self-loop, so its own embedding always contributes.

Each front is registered under its ``model.fusion`` name (:func:`register_fusion`, table :data:`FUSIONS`) and
built from the config by its ``from_config``; :func:`build_fusion` looks the name up. A new fusion is a class
here with that decorator, and its name in ``sparta.config.FUSION_NAMES`` (the light list configs are checked
against).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sparta import grids
from sparta.config import FUSION_NAMES, ConfigError, ModelConfig
from sparta.grids import Fields
from sparta.models.resnet import ResNet18Encoder, grouped_encoders_forward

# Surface channels that have a pressure-level counterpart: short name -> physical base.
# Note: 'u10'/'v10' are the 10 m winds (a wind at 10 hPa has the same short name and is read as surface).
SURFACE_BASES = {"t2m": "t", "u10": "u", "v10": "v"}
# Pairs of bases linked at the same level: the two wind components; temperature and geopotential
# (hydrostatic balance ties a layer's temperature to its geopotential thickness).
SAME_LEVEL_PAIRS = (("u", "v"), ("t", "z"))


def parse_channel(name: str) -> tuple[str, int | None]:
    """'z850' -> ('z', 850); surface channels -> (base, None): 't2m' -> ('t', None), 'msl' -> ('msl', None)."""
    if name in SURFACE_BASES:
        return SURFACE_BASES[name], None
    match = re.fullmatch(r"([a-z]+)(\d+)", name)
    return (match[1], int(match[2])) if match else (name, None)


def _check_channels(channels: Sequence[str]) -> None:
    if not channels:
        raise ConfigError("the model needs at least one channel")
    if len(set(channels)) != len(channels):
        raise ConfigError(f"channel names must be unique, got {list(channels)}")


def adjacency_from_edges(channels: Sequence[str], edges: Sequence[tuple[str, str]],
                         directed: bool = False) -> torch.Tensor:
    """Bool (C, C) adjacency with self-loops from edges between channel names.

    An edge (u, v) sends u's embedding to v; undirected edges (the default) go both ways.
    """
    _check_channels(channels)
    index = {name: i for i, name in enumerate(channels)}
    adj = torch.eye(len(channels), dtype=torch.bool)
    for edge in edges:
        if len(edge) != 2:
            raise ConfigError(f"graph edge {edge} must be a pair of channel names")
        unknown = [n for n in edge if n not in index]
        if unknown:
            raise ConfigError(f"graph edge {tuple(edge)} names unknown channel(s) {unknown}; "
                              f"known channels: {', '.join(channels)}")
        src, dst = index[edge[0]], index[edge[1]]
        adj[dst, src] = True
        if not directed:
            adj[src, dst] = True
    return adj


def default_adjacency(channels: Sequence[str]) -> torch.Tensor:
    """The physically motivated graph, built from channel names.

    Edges: u<->v and t<->z at the same level; 2 m temperature <-> geopotential at the lowest-altitude
    (highest-pressure) level present; each variable <-> itself at the neighbouring pressure levels
    present. For the paper's [t2m, z850, u850, v850, q850]: t2m-z850, u850-v850 (q850 only itself).
    """
    _check_channels(channels)
    by_level: dict[int | None, dict[str, str]] = {}
    for name in channels:
        base, level = parse_channel(name)
        by_level.setdefault(level, {})[base] = name
    edges = [(names[a], names[b]) for names in by_level.values() for a, b in SAME_LEVEL_PAIRS
             if a in names and b in names]
    z_levels = [lvl for lvl, names in by_level.items() if lvl is not None and "z" in names]
    if z_levels and "t" in by_level.get(None, {}):
        edges.append((by_level[None]["t"], by_level[max(z_levels)]["z"]))
    levels = sorted(lvl for lvl in by_level if lvl is not None)
    bases = {base for lvl in levels for base in by_level[lvl]}
    for base in bases:
        present = [by_level[lvl][base] for lvl in levels if base in by_level[lvl]]
        edges += list(zip(present, present[1:]))
    return adjacency_from_edges(channels, edges)


def validate_adjacency(adjacency: torch.Tensor, channels: Sequence[str], directed: bool = False) -> torch.Tensor:
    """Check a user adjacency (square, one row per channel, self-loops, symmetric unless directed)."""
    adj = torch.as_tensor(adjacency).bool()
    n = len(channels)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ConfigError(f"adjacency must be a square matrix, got shape {tuple(adj.shape)}")
    if adj.shape[0] != n:
        raise ConfigError(f"adjacency is {adj.shape[0]}x{adj.shape[0]} but there are {n} channels "
                          f"({', '.join(channels)})")
    missing = [channels[i] for i in range(n) if not adj[i, i]]
    if missing:
        raise ConfigError(f"adjacency lacks self-loops for {missing}; every node must keep its own embedding")
    if not directed and not torch.equal(adj, adj.T):
        pairs = [(channels[i], channels[j]) for i, j in (adj != adj.T).nonzero().tolist() if i < j]
        raise ConfigError(f"adjacency is not symmetric at {pairs}; add the reverse edges or pass directed=True")
    return adj


FUSIONS: dict[str, type[nn.Module]] = {}
"""``model.fusion`` name -> encoder front class, filled by :func:`register_fusion`; :func:`build_fusion` reads it."""


def register_fusion(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: the class is the encoder front of ``model.fusion=name``.

    :func:`build_fusion` calls its classmethod ``from_config(cfg, channels, channel_grids, **encoder)``
    (``encoder``: the ResNet keywords every front takes). ``name`` must be in ``sparta.config.FUSION_NAMES``,
    the list a config is validated against without importing this module.
    """
    if name not in FUSION_NAMES:
        raise ValueError(f"fusion '{name}' is not in sparta.config.FUSION_NAMES ({', '.join(FUSION_NAMES)}): "
                         "add it there so that model.fusion accepts it")

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        if name in FUSIONS:
            raise ValueError(f"fusion '{name}' is registered twice ({FUSIONS[name].__name__}, {cls.__name__})")
        FUSIONS[name] = cls
        return cls

    return register


@register_fusion("early")
class EarlyFusion(nn.Module):
    """One ResNet-18 over all channels stacked as image channels (the paper's main model)."""

    def __init__(self, channels: Sequence[str], embed_dim: int = 1000, **encoder: Any) -> None:
        super().__init__()
        _check_channels(channels)
        self.channels = list(channels)
        self.encoder = ResNet18Encoder(len(channels), embed_dim, **encoder)

    @classmethod
    def from_config(cls, cfg: ModelConfig, channels: Sequence[str],
                    channel_grids: Sequence[tuple[int, int]] | None, **encoder: Any) -> EarlyFusion:
        if cfg.linear_path:
            encoder["linear_grid"] = channel_grids[0]
            encoder["linear_fill"] = cfg.linear_init == "eof"
        return cls(channels, **encoder)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(x, list):
            raise ValueError("early fusion stacks the variables as channels of one grid; variables on several "
                             "grids need late fusion (attention or gnn)")
        return self.encoder(x, keep)


class LateFusion(nn.Module):
    """Base of the late-fusion fronts: one single-channel ResNet-18 per variable (weights not shared).

    ``encoder`` keywords (width, stem_norm, gn_groups, stem, pool) go to every :class:`ResNet18Encoder`;
    ``linear_grids`` gives each variable's native (n_lat, n_lon) for the encoders' linear paths.

    The encoders that see inputs of one size and have one linear grid run as one network
    (:func:`~sparta.models.resnet.grouped_encoders_forward`: grouped convolutions, batched matmuls),
    the same mathematics as running them one after another at the cost of about one early-fusion encoder. Parameters stay in
    ``encoders[i]``, so checkpoints have one layout either way.
    """

    def __init__(self, channels: Sequence[str], embed_dim: int = 1000,
                 linear_grids: Sequence[tuple[int, int]] | None = None, **encoder: Any) -> None:
        super().__init__()
        _check_channels(channels)
        self.channels = list(channels)
        grids_ = linear_grids or [None] * len(channels)
        self.encoders = nn.ModuleList(ResNet18Encoder(1, embed_dim, linear_grid=g, **encoder) for g in grids_)
        self.linear_grids = list(grids_)

    @classmethod
    def from_config(cls, cfg: ModelConfig, channels: Sequence[str],
                    channel_grids: Sequence[tuple[int, int]] | None, **encoder: Any) -> LateFusion:
        """The front of ``cfg``; subclasses with settings of their own add them to ``encoder`` and call this."""
        if cfg.linear_path:
            encoder["linear_grids"] = list(channel_grids)
        return cls(channels, **encoder)

    def variable_embeddings(self, x: Fields, keep: Fields | None = None) -> torch.Tensor:
        """(B, C, H, W), or one such tensor per grid, -> (B, C, embed_dim): one embedding per variable.

        Each variable's encoder sees it on its own grid (the ResNet accepts any size >= 16), with its own
        channel of the observation mask ``keep`` (per grid: (B, 1 or C, H, W); None = complete).
        """
        channels = grids.split_channels(x)
        if len(channels) != len(self.encoders):
            raise ValueError(f"input has {len(channels)} channels, the model was built for {len(self.encoders)}")
        keeps = ([None] * len(channels) if keep is None else
                 grids.split_channels([k.expand(p.shape) for k, p in zip(grids.as_list(keep), grids.as_list(x))]))
        groups: dict[tuple, list[int]] = {}  # encoders that can run as one network: same input size, same linear grid
        for i, c in enumerate(channels):
            groups.setdefault((tuple(c.shape[2:]), self.linear_grids[i]), []).append(i)
        def stacked(members: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
            return (torch.cat([channels[i] for i in members], dim=1),
                    None if keep is None else torch.cat([keeps[i] for i in members], dim=1))

        if len(groups) == 1:  # one grid (the usual case): no reordering
            return grouped_encoders_forward(list(self.encoders), *stacked(list(range(len(channels)))))
        out: list[torch.Tensor | None] = [None] * len(channels)
        for members in groups.values():
            h = grouped_encoders_forward([self.encoders[i] for i in members], *stacked(members))
            for j, i in enumerate(members):
                out[i] = h[:, j]
        return torch.stack(out, dim=1)


@register_fusion("attention")
class AttentionFusion(LateFusion):
    """Variable embeddings as tokens, a learned CLS token, one transformer block; h = CLS output.

    Deviation from the reference, which used a bare nn.MultiheadAttention: a pre-norm block
    (x + MHA(LN(x)), then x + FFN(LN(x))) so the residual path keeps each token's own embedding
    and the FFN adds a per-token nonlinearity. The FFN hidden size equals embed_dim (small).
    """

    def __init__(self, channels: Sequence[str], embed_dim: int = 1000, heads: int = 8, **encoder: Any) -> None:
        if embed_dim % heads:
            raise ConfigError(f"model.embed_dim={embed_dim} must be divisible by model.attention_heads={heads}")
        super().__init__(channels, embed_dim, **encoder)
        self.cls = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02)
        self.modality = nn.Embedding(len(channels) + 1, embed_dim)  # index 0 = CLS, then the variables
        nn.init.normal_(self.modality.weight, std=0.02)
        self.norm_attn = nn.LayerNorm(embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.norm_ffn = nn.LayerNorm(embed_dim)
        self.ffn = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))

    @classmethod
    def from_config(cls, cfg: ModelConfig, channels: Sequence[str],
                    channel_grids: Sequence[tuple[int, int]] | None, **encoder: Any) -> AttentionFusion:
        return super().from_config(cfg, channels, channel_grids, **encoder, heads=cfg.attention_heads)

    def token_outputs(self, x: Fields, keep: Fields | None = None) -> torch.Tensor:
        """(B, C, H, W) (or one tensor per grid) observed where ``keep`` -> (B, C + 1, embed_dim): the block's
        outputs, CLS first."""
        tokens = self.variable_embeddings(x, keep)
        t = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1) + self.modality.weight
        q = self.norm_attn(t)
        t = t + self.attn(q, q, q, need_weights=False)[0]
        return t + self.ffn(self.norm_ffn(t))

    def forward(self, x: Fields, keep: Fields | None = None) -> torch.Tensor:
        return self.token_outputs(x, keep)[:, 0]


@register_fusion("gnn")
class GraphFusion(LateFusion):
    """Variable embeddings as graph nodes, one graph-attention layer over a fixed graph; h = node mean.

    The layer runs batched on the dense adjacency with ``add_loop=False``: the self-loops come from the
    adjacency itself (validated), so the matrix stored here is exactly the graph used.
    """

    def __init__(self, channels: Sequence[str], embed_dim: int = 1000, adjacency: torch.Tensor | None = None,
                 directed: bool = False, **encoder: Any) -> None:
        super().__init__(channels, embed_dim, **encoder)
        adj = default_adjacency(channels) if adjacency is None else validate_adjacency(adjacency, channels, directed)
        self.register_buffer("adjacency", adj)
        from torch_geometric.nn import DenseGATConv  # ~2 s to import: only when a GNN fusion is built

        self.gat = DenseGATConv(embed_dim, embed_dim, heads=1)

    @classmethod
    def from_config(cls, cfg: ModelConfig, channels: Sequence[str],
                    channel_grids: Sequence[tuple[int, int]] | None, **encoder: Any) -> GraphFusion:
        """``cfg.graph`` (edges between channel names) replaces the default graph."""
        adjacency = None if cfg.graph is None else adjacency_from_edges(channels, cfg.graph)
        return super().from_config(cfg, channels, channel_grids, **encoder, adjacency=adjacency)

    def node_outputs(self, x: Fields, keep: Fields | None = None) -> torch.Tensor:
        """(B, C, H, W) (or one tensor per grid) observed where ``keep`` -> (B, C, embed_dim): each node's output
        after the graph layer."""
        return self.gat(self.variable_embeddings(x, keep), self.adjacency, add_loop=False)

    def forward(self, x: Fields, keep: Fields | None = None) -> torch.Tensor:
        return self.node_outputs(x, keep).mean(dim=1)


def build_fusion(cfg: ModelConfig, channels: Sequence[str],
                 channel_grids: Sequence[tuple[int, int]] | None = None) -> nn.Module:
    """The encoder front registered as ``cfg.fusion`` (:data:`FUSIONS`), built by its ``from_config``;
    ``cfg.graph`` (edges by name) overrides the default graph.

    ``channel_grids``: each channel's native (n_lat, n_lon), needed by ``cfg.linear_path``.
    """
    common: dict[str, Any] = dict(embed_dim=cfg.embed_dim, width=cfg.width, stem_norm=cfg.stem_norm,
                                  gn_groups=cfg.gn_groups, stem=cfg.stem, pool=cfg.pool_hw, norm=cfg.norm)
    if cfg.linear_path and channel_grids is None:
        raise ValueError("model.linear_path needs each channel's grid (channel_grids)")
    return FUSIONS[cfg.fusion].from_config(cfg, channels, channel_grids, **common)
