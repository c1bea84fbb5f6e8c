"""A downstream task added in one file, as a user would add one: its TaskSpec and its code, each registered with
one call, then run, saved in metrics.json and laid out in the downstream table like the built-in tasks."""

import json

import pytest

import sparta.evaluation as evaluation
import sparta.tasks as tasks
from sparta.config import load_config
from sparta.evaluation import Evaluation, Task, run_tasks
from sparta.runs import Run
from sparta.tables import downstream_table
from sparta.training import train_run

SPEC = tasks.TaskSpec("latent_spread", "latent_spread", "the spread of the complete test days' embeddings",
                      (tasks.Column("Latent spread", "spread", "", 4),), "latent spread")


def latent_spread(ev: Evaluation) -> dict:
    return {"spread": float(ev.h_clean.std(0).mean())}


@pytest.fixture
def registered():
    tasks.register(SPEC)
    task = evaluation.register(Task(SPEC, latent_spread, lambda run, results, label: None))
    yield task
    del tasks.TASK_SPECS[SPEC.name], evaluation.TASKS[SPEC.name]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, micro_store) -> Run:
    cfg = load_config("micro", [f"data.store={micro_store.path}"], method="pca")  # closed form: seconds
    return train_run(Run.create(cfg, tmp_path_factory.mktemp("plugin") / "run"), micro_store, progress=False)


def test_a_task_registered_in_one_file_runs_and_reaches_the_tables(registered, fitted, micro_store):
    ev = Evaluation(fitted, micro_store, progress=False)
    results = run_tasks(ev, ["latent_spread"])
    saved = json.loads((fitted.evaluation / "metrics.json").read_text())
    assert saved["latent_spread"] == results["latent_spread"] == {"spread": float(ev.h_clean.std(0).mean())}
    table = downstream_table({"EOF/PCA": saved}, [SPEC])
    assert table.header == ["Latent spread"] and table.rows["EOF/PCA"] == [f"{saved['latent_spread']['spread']:.4f}"]


def test_a_task_is_registered_once_and_its_code_after_its_spec(registered):
    with pytest.raises(ValueError, match="clashes with the registered task 'latent_spread'"):
        tasks.register(SPEC)
    with pytest.raises(ValueError, match="registered already"):
        evaluation.register(registered)
    stray = tasks.TaskSpec("stray", "stray", "a task whose spec was never registered")
    with pytest.raises(ValueError, match="register its TaskSpec with sparta.tasks.register first"):
        evaluation.register(Task(stray, latent_spread, lambda run, results, label: None))
