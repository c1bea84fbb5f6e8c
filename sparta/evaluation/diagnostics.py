"""The diagnostics task: how smooth the masked embeddings' trajectory through time is (temporal and cycle
distances), with the latents its figures are drawn from."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sparta import metrics, plots
from sparta.evaluation.state import Evaluation, Task
from sparta.runs import Run
from sparta.tasks import TASK_SPECS


def _trajectory_windows(h_masked: Tensor, lookback: int = 5, stride: int = 5, count: int = 64):
    """Mean embedding of non-overlapping masked look-back windows and the next (masked) day."""
    n = min(count, (len(h_masked) - lookback - 1) // stride + 1)
    if n < 6:
        return None
    starts = torch.arange(n) * stride
    means = h_masked[starts[:, None] + torch.arange(lookback)].mean(1)
    return means.numpy(), h_masked[starts + lookback].numpy()


def diagnostics(ev: Evaluation) -> dict:
    """Smoothness of the masked embeddings' trajectory: temporal and cycle distances (raw and normalised)."""
    n = min(ev.downstream.smoothness_days, len(ev.h_masked))
    h = ev.h_masked[:n]
    out = {}
    for name, fn in (("temporal", metrics.step_distances), ("cycle", metrics.cycle_distances)):
        for suffix, normalise in (("", False), ("_normalised", True)):
            mean, std = metrics.mean_std(fn(h, normalise=normalise))
            out[f"{name}{suffix}"] = {"mean": mean, "std": std}
    np.save(ev.run.evaluation / "smoothness_latents.npy", h.numpy())
    windows = _trajectory_windows(ev.h_masked)
    path = ev.run.evaluation / "trajectory_windows.npz"
    if windows is not None:
        np.savez(path, means=windows[0], next=windows[1])
    else:
        path.unlink(missing_ok=True)
    return out


def _draw_diagnostics(run: Run, results: dict, label: str) -> None:
    path = run.evaluation / "smoothness_latents.npy"
    if not path.exists():
        return
    h = torch.from_numpy(np.load(path))
    figs = run.figures
    plots.plot_distance_series({label: metrics.step_distances(h).numpy()}, "||h_t - h_{t-1}||^2",
                               figs / "temporal_distance.png")
    plots.plot_distance_series({label: metrics.cycle_distances(h).numpy()}, "||h_{t-1} - 2h_t + h_{t+1}||^2",
                               figs / "cycle_distance.png")
    plots.plot_pca({label: h.numpy()}, figs / "pca.png")
    windows = run.evaluation / "trajectory_windows.npz"
    if windows.exists():
        with np.load(windows) as saved:
            plots.plot_trajectories({label: (saved["means"], saved["next"])}, figs / "trajectories.png",
                                    seed=run.config.train.seed)


TASK = Task(TASK_SPECS["diagnostics"], diagnostics, _draw_diagnostics)
