"""Season classification from latents of masked samples (paper section 4.3), a probe of the latent space.

Beside the paper's cross-entropy, accuracy and a confusion matrix are reported:
a cross-entropy alone does not say which seasons are confused.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

from sparta.config import DownstreamConfig
from sparta.downstream.common import fit, seeded


class SeasonClassifier(nn.Sequential):
    """The reference's MLP with widths scaled to the embedding: D -> D/4 -> D/16 -> classes.

    Hidden widths are at least 8 so that small embeddings still get a usable head; at D=1000 this is
    the reference's 266,688-parameter network.
    """

    def __init__(self, embed_dim: int, n_classes: int = 4) -> None:
        w1, w2 = max(embed_dim // 4, 8), max(embed_dim // 16, 8)
        super().__init__(
            nn.Linear(embed_dim, w1), nn.BatchNorm1d(w1), nn.LeakyReLU(), nn.Dropout(0.5),
            nn.Linear(w1, w2), nn.BatchNorm1d(w2), nn.LeakyReLU(), nn.Dropout(0.5),
            nn.Linear(w2, n_classes),
        )


def _ce_loss(model: nn.Module, batch: tuple[Tensor, ...], _: torch.Generator) -> Tensor:
    h, y = batch
    return F.cross_entropy(model(h), y)


def train_classifier(h: Tensor, y: Tensor, val_h: Tensor, val_y: Tensor, cfg: DownstreamConfig,
                     seed: int = 0, progress: bool = True) -> tuple[SeasonClassifier, list[dict[str, float]]]:
    """Cross-entropy, Adam lr ``cfg.lr`` with weight decay 1e-2 (reference), ``cfg.classifier_epochs`` epochs.

    ``y`` holds integer season labels: DJF=0, MAM=1, JJA=2, SON=3.
    """
    with seeded(seed):
        model = SeasonClassifier(h.shape[-1])
        history = fit(model, (h, y.long()), (val_h, val_y.long()), _ce_loss, epochs=cfg.classifier_epochs,
                      lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=1e-2, seed=seed,
                      progress=progress, desc="classifier")
    return model, history


def class_logits(model: SeasonClassifier, h: Tensor) -> Tensor:
    """(N, classes) logits of embeddings ``h`` (their softmax: the class probabilities)."""
    model.eval()
    with torch.no_grad():
        return model(h.to(next(model.parameters()).device)).cpu()


def evaluate_classifier(model: SeasonClassifier, h: Tensor, y: Tensor) -> dict[str, float | list[list[int]]]:
    """Mean cross-entropy, accuracy and the confusion matrix (row = true class, column = predicted)."""
    return classification_scores(class_logits(model, h), y)


def classification_scores(logits: Tensor, y: Tensor) -> dict[str, float | list[list[int]]]:
    """Mean cross-entropy, accuracy and the confusion matrix (row = true class, column = predicted) of logits."""
    y = y.long().cpu()
    n_classes = logits.shape[-1]
    pred = logits.argmax(-1)
    return {
        "cross_entropy": float(F.cross_entropy(logits, y)),
        "accuracy": float(multiclass_accuracy(pred, y, n_classes, average="micro")),
        "confusion": multiclass_confusion_matrix(pred, y, n_classes).tolist(),
    }
