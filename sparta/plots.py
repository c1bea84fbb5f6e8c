"""Figures, always saved to files (never shown), built from saved results."""

from __future__ import annotations

import zlib
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from sparta import variants  # noqa: E402
from sparta.metrics import FIELD_METRICS, VARIABLE_METRICS, variable_metrics_in  # noqa: E402

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


# Fixed colours per model come from the variants registry (sparta.variants.color); other names get a stable
# hashed colour.
BASELINE_STYLES = {"persistence": {"color": "0.35", "linestyle": "--"},
                   "climatology": {"color": "0.65", "linestyle": "--"},
                   "reconstruction ceiling": {"color": "0.2", "linestyle": ":"}}
_PALETTE = ("tab:pink", "tab:gray", "black")
# axis labels of the field scores; "rrmse" is how curves files written before the two formulas name ours (L2)
METRIC_LABELS = {"rrmse": "RRMSE (%)", **{key: metric.axis_label for key, metric in FIELD_METRICS.items()}}


def model_color(name: str) -> str:
    """Colour of a model label, identical across figures and runs."""
    return variants.color(name) or _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]


def _legend_below(fig, ax) -> None:
    """One legend under all panels, so it never hides a curve however many models there are: every label drawn
    on any panel once, ``ax``'s first."""
    found: dict = {}
    for panel in [ax, *fig.axes]:
        for handle, label in zip(*panel.get_legend_handles_labels()):
            found.setdefault(label, handle)
    fig.legend(list(found.values()), list(found), loc="outside lower center", ncols=min(3, len(found)),
               fontsize="small")


def _panels(n: int, width: float = 4.0, height: float = 3.4):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False, layout="constrained")
    return fig, axes[0]


def plot_distance_series(series: dict[str, np.ndarray], ylabel: str, path: Path) -> Path:
    """Per-step latent distance (temporal or cycle) of several models overlaid; legend gives mean ± std."""
    fig, ax = plt.subplots(figsize=(7, 3.4), layout="constrained")
    for name, values in series.items():
        values = np.asarray(values, dtype=float)
        ax.plot(values, color=model_color(name), lw=1.2,
                label=f"{name}: {values.mean():.3g} ± {values.std():.3g}")
    ax.set_xlabel("test step")
    ax.set_ylabel(ylabel)
    ax.set_title(ylabel)
    ax.legend()
    return save(fig, path)


def plot_pca(latents: dict[str, np.ndarray], path: Path) -> Path:
    """One panel per model: PCA(2) of consecutive latents (T, D), coloured by time, joined in order."""
    fig, axes = _panels(len(latents))
    for ax, (name, h) in zip(axes, latents.items()):
        pca = PCA(n_components=2).fit(h)
        xy = pca.transform(h)
        ax.plot(xy[:, 0], xy[:, 1], color="0.6", lw=0.5, zorder=1)
        points = ax.scatter(xy[:, 0], xy[:, 1], c=np.arange(len(xy)), cmap="viridis", s=12, zorder=2)
        var = pca.explained_variance_ratio_ * 100
        ax.set_xlabel(f"PC1 ({var[0]:.0f}% var.)")
        ax.set_ylabel(f"PC2 ({var[1]:.0f}% var.)")
        ax.set_title(name, color=model_color(name))
        fig.colorbar(points, ax=ax, label="time step")
    fig.suptitle("PCA of consecutive latent points")
    return save(fig, path)


def plot_trajectories(windows: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, seed: int = 0) -> Path:
    """One panel per model: t-SNE of look-back-window mean embeddings (N, D) with arrows to the next point (N, D)."""
    fig, axes = _panels(len(windows))
    for ax, (name, (means, nexts)) in zip(axes, windows.items()):
        n = len(means)
        tsne = TSNE(n_components=2, perplexity=max(1, min(30, (2 * n - 1) // 3)), init="pca", random_state=seed)
        with threadpool_limits(1):  # single thread: reproducible, and no OpenMP oversubscription on busy CPUs
            xy = tsne.fit_transform(np.concatenate([means, nexts]).astype(np.float32))
        start, end = xy[:n], xy[n:]
        time = np.arange(n)
        ax.quiver(start[:, 0], start[:, 1], *(end - start).T, time, cmap="viridis", angles="xy",
                  scale_units="xy", scale=1, width=0.004, alpha=0.7)
        points = ax.scatter(start[:, 0], start[:, 1], c=time, cmap="viridis", s=14, edgecolors="k", lw=0.3)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_title(name, color=model_color(name))
        fig.colorbar(points, ax=ax, label="window index (time)")
    fig.suptitle("Latent trajectories: look-back-window mean → next point")
    return save(fig, path)


def _map_grid(columns: dict[str, np.ndarray], channels: list[str], lat: np.ndarray, lon: np.ndarray,
              title: str, units: list[str] | None, shared: list[str], shared_errors: list[str] = ()):
    """Rows = channels, columns = named (C, H, W) fields; the `shared` columns share a colour scale per row, and so
    do the `shared_errors` columns (a magma scale from 0, so that errors compare); the others have their own."""
    rows = len(channels)
    fig, axes = plt.subplots(rows, len(columns), figsize=(4.2 * len(columns), 2.4 * rows + 0.6),
                             squeeze=False, layout="constrained")
    for c, channel in enumerate(channels):
        unit = f" [{units[c]}]" if units else ""
        groups = [(list(shared), "viridis", f"{channel}{unit}"), (list(shared_errors), "magma", f"|error|{unit}")]
        scales = [(np.nanmin(np.stack([columns[k][c] for k in keys])) if cmap == "viridis" else 0.0,
                   np.nanmax(np.stack([columns[k][c] for k in keys]))) if keys else None for keys, cmap, _ in groups]
        meshes: list = [None, None]
        grouped_axes: list[list] = [[], []]
        for ax, (name, fields) in zip(axes[c], columns.items()):
            g = next((i for i, (keys, _, _) in enumerate(groups) if name in keys), None)
            vmin, vmax = scales[g] if g is not None else (None, None)
            mesh = ax.pcolormesh(lon, lat, np.ma.masked_invalid(fields[c]), shading="nearest",
                                 cmap=groups[g][1] if g is not None else "magma", vmin=vmin, vmax=vmax)
            ax.set_title(f"{channel}: {name}")
            ax.set_xlabel("longitude (°E)")
            ax.set_ylabel("latitude (°N)")
            if g is None:
                fig.colorbar(mesh, ax=ax, label=f"{name}{unit}")
            else:
                meshes[g] = mesh
                grouped_axes[g].append(ax)
        for mesh, group_axes, (_, _, label) in zip(meshes, grouped_axes, groups):
            if mesh is not None:
                fig.colorbar(mesh, ax=group_axes, label=label)
    fig.suptitle(title)
    return fig


def plot_error_maps(pred: np.ndarray, true: np.ndarray, channels: list[str], lat: np.ndarray,
                    lon: np.ndarray, title: str, path: Path, units: list[str] | None = None) -> Path:
    """(C, H, W) physical fields: per channel truth, prediction (shared scale) and |error| (own scale)."""
    columns = {"truth": true, "prediction": pred, "|error|": np.abs(pred - true)}
    return save(_map_grid(columns, channels, lat, lon, title, units, ["truth", "prediction"]), path)


def plot_reconstructions(true: np.ndarray, observed: np.ndarray, generated: np.ndarray, channels: list[str],
                         lat: np.ndarray, lon: np.ndarray, path: Path, title: str,
                         units: list[str] | None = None) -> Path:
    """(C, H, W) each: truth, sparse input (NaN where hidden, drawn blank) and generated mean, shared scale per row."""
    columns = {"truth": true, "sparse input": observed, "generated mean": generated}
    return save(_map_grid(columns, channels, lat, lon, title, units, list(columns)), path)


def plot_test_day(true: np.ndarray, complete: np.ndarray, hidden: np.ndarray, fraction: float, channels: list[str],
                  lat: np.ndarray, lon: np.ndarray, title: str, path: Path, units: list[str] | None = None) -> Path:
    """(C, H, W) each: one held-back day's truth, its decoding from the complete input and from the input with a
    ``fraction`` hidden (shared scale per row), and the |error| of each decoding (one scale from 0 per row)."""
    columns = {"truth": true, "decoded, complete input": complete, f"decoded, {fraction:.0%} hidden": hidden,
               "|error|, complete input": np.abs(complete - true), f"|error|, {fraction:.0%} hidden": np.abs(hidden - true)}
    return save(_map_grid(columns, channels, lat, lon, title, units, list(columns)[:3], list(columns)[3:]), path)


def _with_unit(channel: str, units: dict[str, str]) -> str:
    return f"{channel} ({units[channel]})" if units.get(channel) else channel


def _variable_axes(channels: list[str], rows: int):
    """A figure of ``rows`` rows (one per per-variable score) and one column per variable."""
    return plt.subplots(rows, len(channels), figsize=(3.4 * len(channels), 2.8 * rows), squeeze=False,
                        layout="constrained")


def _label_variable_axes(ax, channel: str, metric: str, units: dict[str, str]) -> None:
    name = VARIABLE_METRICS[metric].table_name
    ax.set_ylabel(f"{name} ({units[channel]})" if VARIABLE_METRICS[metric].in_units and units.get(channel) else name)
    ax.set_title(f"{channel}: {name}")


def plot_variable_skill(curves: dict[str, dict[str, dict[str, list[float]]]], path: Path, title: str,
                        units: dict[str, str] | None = None, step_days: float = 1.0) -> Path:
    """Each per-variable score (:data:`~sparta.metrics.VARIABLE_METRICS`, one row each: RMSE in the variable's unit,
    ACC, ...) vs lead time, one column per variable: ``{label: {metric: {channel: per-lead values}}}``, lead 1
    first; the labels persistence, climatology and reconstruction ceiling are drawn as baselines (grey, dashed or
    dotted)."""
    units = units or {}
    channels = list(dict.fromkeys(c for per in curves.values() for values in per.values() for c in values))
    scored = [m for m in VARIABLE_METRICS if any(m in per for per in curves.values())]
    fig, axes = _variable_axes(channels, len(scored))
    for col, channel in enumerate(channels):
        for row, metric in enumerate(scored):
            ax = axes[row][col]
            for label, per in curves.items():
                values = per.get(metric, {}).get(channel)
                if values is None:
                    continue
                style = BASELINE_STYLES.get(label.lower(), {"color": model_color(label), "linestyle": "-"})
                ax.plot(np.arange(1, len(values) + 1) * step_days, values, lw=1.3, label=label, **style)
            ax.set_xlabel("lead time (days)")
            _label_variable_axes(ax, channel, metric, units)
    _legend_below(fig, axes[0][0])
    fig.suptitle(title)
    return save(fig, path)


def plot_reconstruction_skill(results: dict[str, dict], climatology: dict, units: dict[str, str], path: Path,
                              title: str) -> Path:
    """Each per-variable score (one row each) of decoded test days vs the hidden fraction of the input, one column
    per variable, one line per model (``{label: reconstruction results}``: ``hidden`` fractions and
    ``per_variable`` lists); the climatology of the same days (``climatology["per_variable"]``) dashed grey."""
    channels = list(next(iter(next(iter(results.values()))["per_variable"].values())))
    scored = variable_metrics_in([climatology["per_variable"], *(r["per_variable"] for r in results.values())])
    fig, axes = _variable_axes(channels, len(scored))
    for col, channel in enumerate(channels):
        for row, metric in enumerate(scored):
            ax = axes[row][col]
            for label, r in results.items():
                ax.plot(np.asarray(r["hidden"]) * 100, r["per_variable"][metric][channel], marker="o", markersize=3,
                        lw=1.3, color=model_color(label), label=label)
            ax.axhline(climatology["per_variable"][metric][channel], label="climatology",
                       **BASELINE_STYLES["climatology"])
            ax.set_xlabel("hidden fraction of the input (%)")
            _label_variable_axes(ax, channel, metric, units)
    _legend_below(fig, axes[0][0])
    fig.suptitle(title)
    return save(fig, path)


def forecast_summary_curves(summary: dict) -> dict[str, np.ndarray | dict[int, float]]:
    """One forecast setting's metrics.json entry as :func:`plot_forecast_curves` draws it: each per-step
    ``curve`` (the scores computed at every lead) as an array, and each score computed at the reported lead
    times only (in ``at``, not in ``curve``) as ``{lead: value}``."""
    curves: dict[str, np.ndarray | dict[int, float]] = {k: np.array(v) for k, v in summary["curve"].items()}
    curves.update({k: {int(t): v for t, v in per_lead.items()} for k, per_lead in summary.get("at", {}).items()
                   if k in FIELD_METRICS and k not in curves})
    return curves


def plot_forecast_curves(curves: dict[str, dict[str, np.ndarray | dict[int, float]]], path: Path, title: str,
                         step_days: float = 1.0) -> Path:
    """One panel per metric (rrmse/ssim/psnr) vs lead time; baselines (persistence, climatology) dashed grey,
    the model's reconstruction ceiling dotted. A metric given as an array has one value per lead step from 1;
    one given as ``{lead: value}`` (scored at the reported leads only) is drawn at those leads, with markers."""
    metrics = [m for m in METRIC_LABELS if any(m in per_label for per_label in curves.values())]
    fig, axes = _panels(len(metrics))
    for ax, metric in zip(axes, metrics):
        for label, per_label in curves.items():
            if metric not in per_label:
                continue
            style = BASELINE_STYLES.get(label.lower(), {"color": model_color(label), "linestyle": "-"})
            if isinstance(per_label[metric], dict):
                leads = sorted(per_label[metric])
                ax.plot(np.asarray(leads, dtype=float) * step_days, [per_label[metric][t] for t in leads], lw=1.3,
                        marker="o", markersize=3, label=label, **style)
                continue
            values = np.asarray(per_label[metric], dtype=float)
            ax.plot(np.arange(1, len(values) + 1) * step_days, values, lw=1.3, label=label, **style)
        ax.set_xlabel("lead time (days)")
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_title(METRIC_LABELS[metric].split(" (")[0])
    _legend_below(fig, axes[0])
    fig.suptitle(title)
    return save(fig, path)


def plot_confusion(confusion: list[list[int]], labels: list[str], path: Path, title: str) -> Path:
    """Confusion matrix (row = true, column = predicted): counts annotated, colours normalised per row."""
    counts = np.asarray(confusion, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2.2, 1.1 * len(labels) + 1.2), layout="constrained")
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, f"{int(count)}", ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    return save(fig, path)


def plot_robustness(curves: dict[str, dict], path: Path) -> Path:
    """Accuracy and one-step RRMSE vs mask ratio per model (each model's robustness results); mask_ratio and
    accuracy are fractions, rrmse in %. The baselines, where saved (chance accuracy; persistence and climatology
    on the same target days), are horizontal lines: the inputs' sparsity does not change them."""
    fig, axes = _panels(2)
    panels = (("accuracy", 100.0, "classification accuracy (%)", {"chance": "chance_accuracy"}),
              ("rrmse_l2", 1.0, "one-step forecast RRMSE, L2 (%)",
               {"persistence": "persistence_rrmse_l2", "climatology": "climatology_rrmse_l2"}))
    for ax, (key, scale, ylabel, baselines) in zip(axes, panels):
        for name, per_model in curves.items():
            found = key if key in per_model else "rrmse"  # metrics.json written before the two RRMSE formulas
            ax.plot(np.asarray(per_model["mask_ratio"]) * 100, np.asarray(per_model[found]) * scale, marker="o",
                    color=model_color(name), label=name)
        first = next(iter(curves.values()))  # the same days for every model of one store
        for baseline, saved in baselines.items():
            if saved in first:
                ax.axhline(first[saved] * scale, label=baseline,
                           **BASELINE_STYLES.get(baseline, {"color": "0.5", "linestyle": ":"}))
        ax.set_xlabel("mask ratio (%)")
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.split(" (")[0])
    _legend_below(fig, axes[0])
    fig.suptitle("Robustness to sparsity")
    return save(fig, path)


def plot_adjacency(adjacency: np.ndarray, channels: list[str], path: Path) -> Path:
    """Variable graph: labelled adjacency heatmap beside a circular node-link drawing (no self-loops drawn)."""
    adjacency = np.asarray(adjacency, dtype=float)
    n = len(channels)
    fig, (ax_matrix, ax_graph) = _panels(2, width=4.2, height=3.8)
    image = ax_matrix.imshow(adjacency, cmap="Greys", vmin=0, vmax=max(1.0, adjacency.max()))
    ax_matrix.set_xticks(range(n), channels, rotation=45)
    ax_matrix.set_yticks(range(n), channels)
    ax_matrix.set_xlabel("source variable")
    ax_matrix.set_ylabel("target variable")
    ax_matrix.set_title("adjacency matrix")
    fig.colorbar(image, ax=ax_matrix, label="edge weight")
    angle = np.pi / 2 - 2 * np.pi * np.arange(n) / n
    xy = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    strongest = np.abs(adjacency).max() or 1.0
    for i, j in zip(*np.nonzero(adjacency)):
        if i == j or (i > j and adjacency[j, i] != 0):
            continue
        both = adjacency[j, i] != 0
        ax_graph.annotate("", xy=xy[i], xytext=xy[j], arrowprops={
            "arrowstyle": "-" if both else "-|>", "color": "0.3", "shrinkA": 14, "shrinkB": 14,
            "lw": 0.8 + 2.2 * abs(adjacency[i, j]) / strongest})
    ax_graph.scatter(xy[:, 0], xy[:, 1], s=900, color="tab:blue", zorder=2)
    for (x, y), channel in zip(xy, channels):
        ax_graph.text(x, y, channel, ha="center", va="center", fontsize=8, color="white", zorder=3)
    ax_graph.set_xlim(-1.4, 1.4)
    ax_graph.set_ylim(-1.4, 1.4)
    ax_graph.set_aspect("equal")
    ax_graph.axis("off")
    ax_graph.set_title("variable graph (self-loops omitted)")
    return save(fig, path)


def plot_eof_spectrum(ratio: np.ndarray, path: Path) -> Path:
    """Explained variance fraction per EOF and cumulated (the EOF/PCA baseline's fit)."""
    fig, axes = _panels(2)
    k = np.arange(1, len(ratio) + 1)
    axes[0].semilogy(k, np.clip(ratio, 1e-12, None), ".-", color=model_color("EOF/PCA"))
    axes[0].set(xlabel="EOF", ylabel="explained variance fraction", title="per EOF")
    axes[1].plot(k, np.cumsum(ratio), ".-", color=model_color("EOF/PCA"))
    axes[1].set(xlabel="number of EOFs", ylabel="explained variance fraction", ylim=(0, 1.02), title="cumulative")
    return save(fig, path)
