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

The package: :mod:`~sparta.evaluation.state` holds what every task reads; each built-in task is a module whose
:class:`~sparta.evaluation.state.Task` (``TASK``) this module registers (:func:`register`: a task of your own
registers its code the same way, beside its :class:`~sparta.tasks.TaskSpec`); :func:`run_tasks` runs them in
:data:`sparta.tasks.TASK_SPECS`' order and redraws their figures.
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

__all__ = ["TASKS", "Evaluation", "Task", "draw_figures", "register", "rescorable", "run_tasks"]

log = logging.getLogger(__name__)

TASKS: dict[str, Task] = {}
"""The code of each task of :data:`sparta.tasks.TASK_SPECS`, in its order."""


def register(task: Task) -> Task:
    """Add a task's code to :data:`TASKS`; its :class:`~sparta.tasks.TaskSpec` is registered first
    (:func:`sparta.tasks.register`), and a task's code once."""
    name = task.spec.name
    if TASK_SPECS.get(name) is not task.spec:
        raise ValueError(f"task '{name}': register its TaskSpec with sparta.tasks.register first")
    if name in TASKS:
        raise ValueError(f"task '{name}' has its code registered already")
    TASKS[name] = task
    return task


for _module in (forecast, diffusion, reconstruction, classify, diagnostics, robustness):
    register(_module.TASK)


def rescorable() -> list[str]:
    """The tasks that keep their predictions, so ``sparta evaluate --rescore`` scores them again."""
    return [name for name, task in TASKS.items() if task.score is not None]


def run_tasks(ev: Evaluation, tasks: list[str], rescore: bool = False) -> dict:
    """Run ``tasks`` (names in :data:`TASKS`, in the table's order), write ``metrics.json`` after each, then draw
    every figure from the saved results. ``rescore``: score the tasks' saved predictions again instead (every
    registered metric, nothing trained); only tasks that save their predictions (:func:`rescorable`) can."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        codeless = sorted(set(unknown) & set(TASK_SPECS))
        raise ConfigError(f"task(s) {', '.join(codeless)} have no code registered (sparta.evaluation.register)"
                          if codeless else f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    fixed = [name for name in tasks if rescore and TASKS[name].score is None]
    if fixed:
        raise ConfigError(f"task(s) {', '.join(fixed)} keep no predictions to score again; --rescore scores "
                          f"{', '.join(rescorable())}; evaluate the others without --rescore")
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
