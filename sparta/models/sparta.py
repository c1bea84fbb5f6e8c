"""The SPARTA model: encoder front (fusion) -> h, projector h -> z, decoder h -> fields.

The autoencoder baseline is the same class without the projector: same encoder, same decoder, so the
comparison has equal capacity (the reference gave the baseline a weaker decoder).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparta.config import Config, ConfigError, ModelConfig
from sparta.grids import Fields, Grid
from sparta.models.decoder import Decoder, build_decoder
from sparta.models.eof import EOFModel
from sparta.models.fusion import EarlyFusion, build_fusion
from sparta.models.heads import projector
from sparta.models.resnet import LinearPath


class SpartaModel(nn.Module):
    """Encoder, optional projector and decoder; ``forward(x)`` returns the embedding h.

    Stage 3 freezes ``fusion`` and ``projector`` and trains ``decoder`` alone; downstream tasks use h.
    """

    def __init__(self, cfg: ModelConfig, layout: Sequence[Grid], with_projector: bool = True) -> None:
        super().__init__()
        self.layout = list(layout)
        self.channels = [c for grid in self.layout for c in grid.channels]
        self.fusion = build_fusion(cfg, self.channels,
                                   [(grid.n_lat, grid.n_lon) for grid in self.layout for _ in grid.channels])
        self.projector = projector(cfg.embed_dim, cfg.proj_dim) if with_projector else None
        self.decoder = build_decoder(cfg.embed_dim, self.layout, cfg.decoder_channels, cfg.decoder_dropout,
                                     cfg.decoder_blocks, cfg.linear_path, cfg.mean_field)

    def encode(self, x: Fields, keep: Fields | None = None) -> torch.Tensor:
        """(B, C, H, W) at any H, W >= 16 (or one such tensor per grid, late fusion) -> h (B, embed_dim).

        ``keep``: the observation mask, (B, 1 or C, H, W) bool per grid, True = observed; None = complete.
        Hidden values of ``x`` are 0 (the networks' input convention), but only ``keep`` says what is hidden."""
        return self.fusion(x, keep)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """h -> z (B, proj_dim), the space of the contrastive loss."""
        if self.projector is None:
            raise RuntimeError("this model was built without a projector (with_projector=False)")
        return self.projector(h)

    def decode(self, h: torch.Tensor) -> Fields:
        """h -> (B, C, n_lat, n_lon) z-scored fields on the native grid (a list, one per grid, for several)."""
        return self.decoder(h)

    def forward(self, x: Fields, keep: Fields | None = None) -> torch.Tensor:
        return self.encode(x, keep)

    def start_from_eofs(self, eof: EOFModel) -> None:
        """Start training from the EOF reconstruction: the linear paths set to ``eof``'s projection onto
        standardised principal components and its inverse, the networks' output layers to zero.

        The networks then learn what the EOFs miss; h starts as the EOF model's embedding (for complete
        fields; sparse ones get :class:`LinearPath`'s estimate).
        """
        if not isinstance(self.fusion, EarlyFusion) or not isinstance(self.decoder, Decoder):
            raise ConfigError("model.linear_init=eof needs one grid and model.fusion=early")
        if eof.embed_dim != self.fusion.encoder.fc.out_features:
            raise ValueError(f"{eof.embed_dim} EOFs for an embedding of {self.fusion.encoder.fc.out_features}")
        projection, expansion = eof.linear_maps()
        self.fusion.encoder.start_from_projection(projection, eof.mean)
        self.decoder.start_from_expansion(expansion, eof.mean)

    def linear_path_parameters(self) -> list[nn.Parameter]:
        """The encoder's and decoder's linear paths (empty without ``model.linear_path``)."""
        paths = [m for m in self.fusion.modules() if isinstance(m, LinearPath)]
        paths += [m.linear for m in self.decoder.modules() if isinstance(m, Decoder) and m.linear is not None]
        return [p for m in paths for p in m.parameters()]



def build_sparta(cfg: Config, layout: Sequence[Grid]) -> SpartaModel:
    """The ``sparta`` family's untrained model: encoder, projector and decoder."""
    return SpartaModel(cfg.model, layout, with_projector=True)


def build_autoencoder(cfg: Config, layout: Sequence[Grid]) -> SpartaModel:
    """The ``autoencoder`` family's untrained model: SPARTA's encoder and decoder, no projector."""
    return SpartaModel(cfg.model, layout, with_projector=False)
