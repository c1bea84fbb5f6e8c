"""Downstream evaluation of a trained run (paper sections 4, 6.1.3 and 7).

The encoder and decoder are frozen. As in the paper, every downstream model trains
and is scored on the store's *test* split, itself cut chronologically 60/20/20
("inner" train/val/test). Spaces:

- forecast, reconstruction and diffusion RRMSE/SSIM/PSNR: decoded fields in physical units;
- per-variable RMSE and anomaly correlation (WeatherBench2's definitions): decoded fields in each
  variable's unit (specific humidity shown in g/kg), anomalies from the train split's smoothed
  day-of-year climatology, which is also the climatology baseline;
- latent density, realism, smoothness: raw latents and, for comparability between
  models, latents standardised with the inner-train mean/std (``*_std`` keys);
- classification: cross-entropy (nats) and accuracy on the inner test.

Each task writes what it predicts (``evaluation/predictions``, where it keeps them), then its scores
(``evaluation/scores``, ``evaluation/metrics.json``, per-step curves in CSV); tables and figures are built
from those files.

The package: :mod:`~sparta.evaluation.state` holds what every task reads; each task is a module that registers
its :class:`~sparta.evaluation.state.Task` as ``TASK``; this module runs them in :data:`sparta.tasks.TASK_SPECS`'
order and redraws their figures.
"""

from __future__ import annotations

import json
import logging

from sparta.config import ConfigError
from sparta.evaluation import classify, diagnostics, diffusion, forecast, reconstruction, robustness
from sparta.evaluation.state import Evaluation, Task
from sparta.runs import Run
from sparta.tasks import TASK_SPECS
from sparta.variants import run_label

__all__ = ["RESCORABLE", "TASKS", "Evaluation", "Task", "draw_figures", "run_tasks"]

log = logging.getLogger(__name__)

_MODULES = (forecast, diffusion, reconstruction, classify, diagnostics, robustness)
_REGISTERED = {module.TASK.spec.name: module.TASK for module in _MODULES}
if set(_REGISTERED) != set(TASK_SPECS):
    raise ImportError(f"tasks without code: {sorted(set(TASK_SPECS) - set(_REGISTERED))}; "
                      f"code without a TaskSpec: {sorted(set(_REGISTERED) - set(TASK_SPECS))}")
TASKS: dict[str, Task] = {name: _REGISTERED[name] for name in TASK_SPECS}
"""Each task of :data:`sparta.tasks.TASK_SPECS` with the code that runs it and draws its figures."""
RESCORABLE = [name for name, task in TASKS.items() if task.score is not None]
"""The tasks that keep their predictions, so ``sparta evaluate --rescore`` scores them again."""


def run_tasks(ev: Evaluation, tasks: list[str], rescore: bool = False) -> dict:
    """Run ``tasks`` (names in :data:`TASKS`, in the table's order), write ``metrics.json`` after each, then draw
    every figure from the saved results. ``rescore``: score the tasks' saved predictions again instead (every
    registered metric, nothing trained); only tasks that save their predictions (:data:`RESCORABLE`) can."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ConfigError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    fixed = [name for name in tasks if rescore and TASKS[name].score is None]
    if fixed:
        raise ConfigError(f"task(s) {', '.join(fixed)} keep no predictions to score again; --rescore scores "
                          f"{', '.join(RESCORABLE)}; evaluate the others without --rescore")
    ev.run.evaluation.mkdir(parents=True, exist_ok=True)
    path = ev.run.evaluation / "metrics.json"
    if path.exists():  # keep results of tasks not re-run
        ev.results = {**json.loads(path.read_text()), **ev.results}
    for name, task in TASKS.items():
        if name in tasks:
            log.info("%s: %s", ev.run.path, name)
            ev.results[task.spec.key] = task.score(ev) if rescore else task.run(ev)
            path.write_text(json.dumps(ev.results, indent=1))
    draw_figures(ev.run, [TASKS[name] for name in TASKS if name in tasks])
    return ev.results


def draw_figures(run: Run, tasks: list[Task] | None = None) -> None:
    """Redraw the evaluation figures of ``run`` (every task's, or ``tasks``') from its saved results alone."""
    path = run.evaluation / "metrics.json"
    if not path.exists():
        return
    results = json.loads(path.read_text())
    label = run_label(results.get("method", run.config.method), results.get("fusion", run.config.model.fusion))
    for task in tasks if tasks is not None else TASKS.values():
        task.draw(run, results, label)
