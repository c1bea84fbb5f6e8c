"""How much of the weather does a trained encoder's h carry, whatever its decoder makes of it?

A least-squares map h -> fields (with a constant), fitted on the train split's complete days, then applied to
the validation days; printed beside the run's own decoder and the train split's mean field, as normalised MSE
per variable (the units of the training loss). A readout no better than the mean field means h does not
hold that variable's weather (docs/results.md, the learning curve).

    python benchmarks/latent_readout.py RUN/checkpoints/last.pt
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sparta.data import open_or_prepare
from sparta.models.build import load_trained


def _encode(model, x: torch.Tensor, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        h = torch.cat([model.encode(x[i:i + batch]) for i in range(0, len(x), batch)])
        return h, torch.cat([model.decode(h[i:i + batch]) for i in range(0, len(h), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    args = parser.parse_args()
    model, cfg, _ = load_trained(args.checkpoint)
    store = open_or_prepare(cfg.data, progress=False, prepare=False)
    split = {}
    for name in ("train", "val"):
        a, b = store.split_range(name)
        x = torch.as_tensor(np.asarray(store.normalise(store.read(slice(a, b)))), dtype=torch.float32)
        split[name] = (x, *_encode(model, x))
    (x_train, h_train, _), (x_val, h_val, decoded) = split["train"], split["val"]
    with_one = lambda h: torch.cat([h, torch.ones(len(h), 1)], 1).double()  # noqa: E731
    weights = torch.linalg.lstsq(with_one(h_train), x_train.flatten(1).double()).solution
    readout = (with_one(h_val) @ weights).view_as(x_val).float()
    for label, pred in (("decoder", decoded), ("least-squares readout of h", readout),
                        ("train mean field", x_train.mean(0).expand_as(x_val))):
        mse = ((pred - x_val) ** 2).mean(dim=(0, 2, 3))
        cells = "  ".join(f"{c} {v:.3f}" for c, v in zip(store.channels, mse.tolist(), strict=True))
        print(f"{label:28s} {cells}  sum {float(mse.sum()):.3f}")


if __name__ == "__main__":
    main()
