"""Figures, always saved to files (never shown), built from saved results."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LOSS_TERMS = ("total", "nt_xent", "cycle", "recon_views", "recon", "embed_std")


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_training_curves(history: list[dict], out_dir: Path) -> list[Path]:
    """One PNG per stage: every loss term (train solid, validation dashed), and alpha when it decays."""
    paths = []
    for stage in dict.fromkeys(row["stage"] for row in history):
        rows = [r for r in history if r["stage"] == stage]
        epochs = [r["epoch"] for r in rows]
        terms = [t for t in LOSS_TERMS if rows[0].get(f"train_{t}") is not None]
        has_alpha = rows[0].get("alpha") is not None
        panels = terms + (["alpha"] if has_alpha else [])
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8), squeeze=False)
        for ax, term in zip(axes[0], panels):
            if term == "alpha":
                ax.plot(epochs, [r["alpha"] for r in rows], color="k")
            else:
                ax.plot(epochs, [r[f"train_{term}"] for r in rows], label="train")
                ax.plot(epochs, [r.get(f"val_{term}") for r in rows], "--", label="val")
            ax.set_title(term)
            ax.set_xlabel("epoch")
        axes[0][0].legend()
        fig.suptitle(f"stage: {stage}")
        paths.append(save(fig, out_dir / f"loss_{stage}.png"))
    return paths
