"""Networks: ResNet-18 encoder, fusion fronts, projector, decoder and the assembled SPARTA model."""

from sparta.models.decoder import Decoder, MultiGridDecoder
from sparta.models.fusion import (
    AttentionFusion,
    EarlyFusion,
    GraphFusion,
    LateFusion,
    adjacency_from_edges,
    build_fusion,
    default_adjacency,
    parse_channel,
    validate_adjacency,
)
from sparta.models.heads import mlp, projector
from sparta.models.resnet import ResNet18Encoder
from sparta.models.sparta import SpartaModel

__all__ = [
    "AttentionFusion",
    "Decoder",
    "EarlyFusion",
    "GraphFusion",
    "LateFusion",
    "MultiGridDecoder",
    "ResNet18Encoder",
    "SpartaModel",
    "adjacency_from_edges",
    "build_fusion",
    "default_adjacency",
    "mlp",
    "parse_channel",
    "projector",
    "validate_adjacency",
]
