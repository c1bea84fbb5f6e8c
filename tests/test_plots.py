"""Every figure function writes a readable PNG for tiny random inputs and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from sparta import plots

CHANNELS = ["t2m", "z850"]
LAT = np.linspace(-78.75, 78.75, 8)
LON = np.arange(16) * 22.5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def assert_png(returned: Path, expected: Path) -> None:
    assert returned == expected
    assert expected.is_file() and expected.stat().st_size > 1024
    height, width = mpimg.imread(expected).shape[:2]
    assert height > 100 and width > 100


def fields(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(len(CHANNELS), len(LAT), len(LON)))


def test_model_color_is_stable_and_distinct() -> None:
    assert plots.model_color("autoencoder") == plots.model_color("Autoencoder")
    from sparta.variants import VARIANTS

    labels = [v.label for v in VARIANTS.values()]
    assert len({plots.model_color(label) for label in labels}) == len(labels)  # every report variant its own colour
    assert plots.model_color("SPARTA (gnn)") == plots.model_color("SPARTA - Late-Fusion, GNN")
    assert plots.model_color("SPARTA (early)") == plots.model_color("SPARTA - Early-Fusion HN + Cycle")
    assert plots.model_color("EOF/PCA") == plots.model_color("EOF/PCA (linear)") == "tab:red"
    assert plots.model_color("custom-model") == plots.model_color("custom-model")


def test_distance_series_creates_missing_dirs(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "nested" / "deeper" / "temporal.png"
    series = {"autoencoder": rng.random(20) * 40, "sparta-early": rng.random(20) * 3}
    assert_png(plots.plot_distance_series(series, "temporal distance", path), path)


def test_pca(tmp_path: Path, rng: np.random.Generator) -> None:
    latents = {"autoencoder": rng.normal(size=(20, 8)), "sparta-early": np.cumsum(rng.normal(size=(20, 8)), 0)}
    path = tmp_path / "pca.png"
    assert_png(plots.plot_pca(latents, path), path)


@pytest.mark.parametrize("n", [6, 25])
def test_trajectories_small_and_larger_n(tmp_path: Path, rng: np.random.Generator, n: int) -> None:
    windows = {name: (rng.normal(size=(n, 8)), rng.normal(size=(n, 8))) for name in ("autoencoder", "sparta-early")}
    path = tmp_path / "tsne" / f"trajectories_{n}.png"
    assert_png(plots.plot_trajectories(windows, path, seed=1), path)


def test_error_maps(tmp_path: Path, rng: np.random.Generator) -> None:
    true = fields(rng)
    path = tmp_path / "maps" / "errors.png"
    out = plots.plot_error_maps(true + 0.1 * fields(rng), true, CHANNELS, LAT, LON, "LB 30, S 1 at T=50", path,
                                units=["K", "m2 s-2"])
    assert_png(out, path)


def test_reconstructions_with_nan(tmp_path: Path, rng: np.random.Generator) -> None:
    true = fields(rng)
    observed = np.where(rng.random(true.shape) < 0.7, np.nan, true)
    path = tmp_path / "recon.png"
    assert_png(plots.plot_reconstructions(true, observed, fields(rng), CHANNELS, LAT, LON, path, "diffusion"), path)


def test_forecast_curves_with_baselines(tmp_path: Path, rng: np.random.Generator) -> None:
    curves = {label: {"rrmse": rng.random(10) * 20, "ssim": rng.random(10), "psnr": 20 + rng.random(10)}
              for label in ("autoencoder", "sparta-early", "persistence", "climatology")}
    path = tmp_path / "forecast.png"
    assert_png(plots.plot_forecast_curves(curves, path, "autoregressive rollout"), path)


def test_forecast_curves_of_scores_at_the_reported_leads_only(tmp_path: Path, rng: np.random.Generator) -> None:
    leads = ("1", "5", "10")
    summary = {"curve": {"rrmse_paper": list(rng.random(10) * 20), "rrmse_l2": list(rng.random(10) * 10)},
               "at": {**{m: {t: float(rng.random()) for t in leads} for m in ("rrmse_l2", "ssim", "psnr")},
                      "ssim_spread": {t: 0.01 for t in leads}}}
    curves = plots.forecast_summary_curves(summary)
    assert set(curves) == {"rrmse_paper", "rrmse_l2", "ssim", "psnr"} and len(curves["rrmse_l2"]) == 10
    assert curves["ssim"] == {int(t): v for t, v in summary["at"]["ssim"].items()}
    curves = {"sparta-early": curves, "persistence": {"rrmse_l2": rng.random(10)}}
    path = tmp_path / "forecast_at_leads.png"
    assert_png(plots.plot_forecast_curves(curves, path, "rollout"), path)


def test_confusion_with_empty_row(tmp_path: Path) -> None:
    path = tmp_path / "confusion.png"
    confusion = [[5, 1, 0, 0], [2, 7, 1, 0], [0, 0, 0, 0], [0, 1, 2, 9]]
    assert_png(plots.plot_confusion(confusion, ["DJF", "MAM", "JJA", "SON"], path, "season"), path)


def test_robustness(tmp_path: Path, rng: np.random.Generator) -> None:
    ratios = np.array([0.0, 0.3, 0.5, 0.7, 0.9])
    curves = {name: {"mask_ratio": ratios, "accuracy": rng.random(5), "rrmse": rng.random(5) * 30}
              for name in ("autoencoder", "sparta-early")}
    path = tmp_path / "robustness.png"
    assert_png(plots.plot_robustness(curves, path), path)


def test_robustness_with_baselines(tmp_path: Path, rng: np.random.Generator) -> None:
    ratios = [0.0, 0.5, 0.9]
    curves = {"SPARTA": {"mask_ratio": ratios, "accuracy": list(rng.random(3)), "rrmse_l2": list(rng.random(3)),
                         "chance_accuracy": 0.25, "persistence_rrmse_l2": 1.5, "climatology_rrmse_l2": 3.0}}
    path = tmp_path / "robustness_baselines.png"
    assert_png(plots.plot_robustness(curves, path), path)


def test_test_day_maps(tmp_path: Path, rng: np.random.Generator) -> None:
    true = fields(rng)
    path = tmp_path / "test_day.png"
    assert_png(plots.plot_test_day(true, true + 0.1, true + fields(rng), 0.9, CHANNELS, LAT, LON, "day", path,
                                   ["K", "m**2 s**-2"]), path)


def test_variable_skill_and_reconstruction_skill(tmp_path: Path, rng: np.random.Generator) -> None:
    per = lambda n: {m: {c: list(rng.random(n)) for c in CHANNELS} for m in ("rmse", "acc")}  # noqa: E731
    curves = {"SPARTA": per(10), "persistence": per(10), "climatology": per(10)}
    path = tmp_path / "skill.png"
    assert_png(plots.plot_variable_skill(curves, path, "forecast", {"t2m": "K", "z850": "m**2 s**-2"}), path)
    hidden = [0.0, 0.5, 0.9]
    results = {"SPARTA": {"hidden": hidden, "per_variable": per(3)}, "EOF/PCA": {"hidden": hidden, "per_variable": per(3)}}
    climatology = {"per_variable": {m: {c: 0.5 for c in CHANNELS} for m in ("rmse", "acc")}}
    path = tmp_path / "reconstruction.png"
    assert_png(plots.plot_reconstruction_skill(results, climatology, {"t2m": "K"}, path, "decoded"), path)


def test_adjacency(tmp_path: Path) -> None:
    channels = ["t2m", "z850", "u850", "v850", "q850"]
    adjacency = np.eye(5)
    adjacency[2, 3] = adjacency[3, 2] = 1.0
    adjacency[0, 1] = adjacency[1, 0] = 1.0
    adjacency[4, 0] = 0.5
    path = tmp_path / "graph" / "adjacency.png"
    assert_png(plots.plot_adjacency(adjacency, channels, path), path)
