"""Small MLP heads built from one generic block list."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

Block = tuple[int, int, bool, bool]
"""(in_features, out_features, batch-norm after the linear?, ReLU after it?)"""


def mlp(blocks: Sequence[Block]) -> nn.Sequential:
    """Linear layers, each optionally followed by BatchNorm1d and ReLU, in the order given."""
    layers: list[nn.Module] = []
    for d_in, d_out, norm, act in blocks:
        layers.append(nn.Linear(d_in, d_out))
        if norm:
            layers.append(nn.BatchNorm1d(d_out))
        if act:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def projector(embed_dim: int, proj_dim: int) -> nn.Sequential:
    """SimCLR projection g: h -> z, three linear layers (the loss sees z; downstream tasks use h).

    BatchNorm1d keeps running statistics (standard); the reference disables them, which makes eval-mode
    outputs depend on the batch. The projector is only used by the contrastive loss, on full batches.
    """
    return mlp([(embed_dim, proj_dim, True, True), (proj_dim, proj_dim, True, True),
                (proj_dim, proj_dim, False, False)])
