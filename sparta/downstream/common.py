"""One small supervised training loop shared by the forecaster, the DDPM and the classifier.

The downstream models are small and train on latent tensors that fit in memory, so the loop
indexes tensors directly (no DataLoader) and shuffles with a seeded generator: the same seed gives
the same run. Unlike the reference, which kept the last epoch, the best-by-validation weights are
restored at the end.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

LossFn = Callable[[nn.Module, tuple[Tensor, ...], torch.Generator], Tensor]
"""``loss_fn(model, batch, generator) -> scalar``; the generator feeds any randomness the loss
needs (diffusion timesteps and noise), so that it is reproducible too."""


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG (weight init, dropout) without leaking the change to the caller."""
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(seed)
        yield


def _batches(order: Tensor, batch_size: int) -> list[Tensor]:
    # A final batch of one sample is dropped: BatchNorm cannot train on it; shuffling means a
    # different sample sits out each epoch.
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks.pop()
    return chunks


def evaluate_loss(model: nn.Module, data: tuple[Tensor, ...], loss_fn: LossFn, batch_size: int,
                  generator: torch.Generator) -> float:
    """Sample-weighted mean of ``loss_fn`` over ``data`` in eval mode."""
    device = next(model.parameters()).device
    n = len(data[0])
    model.eval()
    total = 0.0
    with torch.no_grad():
        for idx in torch.arange(n).split(batch_size):
            batch = tuple(x[idx].to(device) for x in data)
            total += float(loss_fn(model, batch, generator)) * len(idx)
    return total / n


def fit(model: nn.Module, train: tuple[Tensor, ...], val: tuple[Tensor, ...], loss_fn: LossFn, *,
        epochs: int, lr: float, batch_size: int, weight_decay: float = 0.0, seed: int = 0,
        plateau_factor: float = 0.1, plateau_patience: int = 10, progress: bool = True,
        desc: str = "train") -> list[dict[str, float]]:
    """Train ``model`` in place with Adam and ReduceLROnPlateau on the validation loss.

    ``train`` and ``val`` are tuples of tensors sharing the first (sample) dimension; a batch is
    the same rows of each. The validation loss uses a generator re-seeded every epoch, so a
    stochastic loss (diffusion) is measured on the same draws each epoch and stays comparable.
    Returns one record per epoch: ``epoch`` (from 1), ``train_loss`` (mean over that epoch only),
    ``val_loss`` and the ``lr`` used in that epoch; the model ends with its best-validation weights.
    """
    n = len(train[0])
    if n == 0 or len(val[0]) == 0:
        raise ValueError(f"fit needs non-empty train and validation sets, got {n} and {len(val[0])} samples")
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=plateau_factor,
                                                           patience=plateau_patience)
    generator = torch.Generator().manual_seed(seed)
    best_loss, best_state = math.inf, copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        lr_now = optimizer.param_groups[0]["lr"]
        model.train()
        total, seen = 0.0, 0
        for idx in _batches(torch.randperm(n, generator=generator), batch_size):
            batch = tuple(x[idx].to(device) for x in train)
            loss = loss_fn(model, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        val_loss = evaluate_loss(model, val, loss_fn, batch_size, torch.Generator().manual_seed(seed + 1))
        scheduler.step(val_loss)
        if val_loss < best_loss:
            best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
        history.append({"epoch": epoch, "train_loss": total / seen, "val_loss": val_loss, "lr": lr_now})
        bar.set_postfix(train=f"{total / seen:.4g}", val=f"{val_loss:.4g}")
    model.load_state_dict(best_state)
    model.eval()
    return history
