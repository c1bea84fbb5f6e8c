"""The downstream tasks as a table of names and result layouts, readable without torch.

``sparta evaluate --help``, config validation and the tables read :data:`TASK_SPECS`; the code that runs each
task and draws its figures is registered beside it in :data:`sparta.evaluation.TASKS`, under the same name.
A task with scalar results declares its :class:`Column`\\ s here and :func:`sparta.tables.downstream_table` lays
them out. A task is a :class:`TaskSpec` registered here (:func:`register`) and its code registered with
:func:`sparta.evaluation.register`: one module can hold both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """A column of :func:`sparta.tables.downstream_table`: one scalar of a task's results, ``results[task.key][key]``
    ``better``: 'min', 'max' or '' (no mark);
    ``paper``: the paper's definition (those columns come first)."""

    header: str
    key: str
    better: str
    digits: int
    paper: bool = False

    def get(self, result: dict) -> float | None:
        return result.get(self.key)


@dataclass(frozen=True)
class TaskSpec:
    """A downstream task's name, the key of its results in metrics.json and what it does; ``columns``: its scalar
    results in the downstream table, whose title names it ``table_name``, with the rows of
    ``baselines(results) -> {baseline: values}`` beside the models'. Forecast and diagnostics have tables of their
    own layout in :mod:`sparta.tables`."""

    name: str
    key: str
    description: str
    columns: tuple[Column, ...] = ()
    table_name: str = ""
    baselines: Callable[[dict], dict[str, dict]] | None = None


# The headers of the decoded-field scores are those of sparta.metrics.FIELD_METRICS (a test holds them equal;
# that module imports torch).
DIFFUSION_COLUMNS = (
    Column("Diffusion RRMSE (paper formula, %)", "rrmse_paper", "min", 2, paper=True),
    Column("Latent density (paper: mean of draws)", "density_paper", "max", 3, paper=True),
    Column("Realism (paper: mean of draws)", "realism_paper", "max", 3, paper=True),
    Column("Std dev (paper: all generated values)", "latent_std_all_samples", "min", 4, paper=True),
    Column("Diffusion RRMSE (L2, ours, %)", "rrmse_l2", "min", 2),
    Column("Latent density (ours: every draw)", "density_per_draw", "max", 3),
    Column("Realism (ours: every draw)", "realism_per_draw", "max", 3),
    Column("Std across draws (ours)", "latent_std_per_condition", "min", 4),
    Column("Density (std. latents, every draw)", "density_per_draw_standardised", "max", 3),
    Column("Realism (std. latents, every draw)", "realism_per_draw_standardised", "max", 3),
    Column("Std across draws (std. latents)", "latent_std_per_condition_standardised", "min", 4),
)
CLASSIFY_COLUMNS = (
    Column("Class. test loss", "cross_entropy", "min", 4, paper=True),
    Column("Class. accuracy", "accuracy", "max", 3),
)


def _chance(results: dict) -> dict[str, dict]:
    """A classifier that knows nothing: accuracy 1 / classes, cross-entropy ln(classes) (uniform probabilities)."""
    n = len(results["confusion"])
    return {"chance": {"accuracy": 1.0 / n, "cross_entropy": math.log(n)}}


TASK_SPECS: dict[str, TaskSpec] = {}
"""The downstream tasks, in the order ``sparta evaluate`` runs them (the order they were registered)."""


def register(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to :data:`TASK_SPECS`; a name (and a metrics.json key) is registered once."""
    taken = [t.name for t in TASK_SPECS.values() if spec.name == t.name or spec.key == t.key]
    if taken:
        raise ValueError(f"task '{spec.name}' (key '{spec.key}') clashes with the registered task '{taken[0]}'")
    TASK_SPECS[spec.name] = spec
    return spec


for _spec in (
    TaskSpec("forecast", "forecast",
             "latent LSTM and linear inverse model forecasts, decoded and scored per lead, with baselines"),
    TaskSpec("diffusion", "diffusion", "conditional latent diffusion from sparse inputs", DIFFUSION_COLUMNS,
             "conditional latent diffusion", lambda r: {"climatology": r["climatology"]} if "climatology" in r else {}),
    TaskSpec("reconstruction", "reconstruction",
             "test days decoded from complete inputs and from each hidden fraction, with the climatology"),
    TaskSpec("classify", "classify", "season classification from sparse embeddings", CLASSIFY_COLUMNS,
             "latent classification", _chance),
    TaskSpec("diagnostics", "smoothness", "smoothness and trajectories of the latents"),
    TaskSpec("robustness", "robustness", "accuracy and forecast error vs mask ratio"),
):
    register(_spec)
