"""Train and evaluate the paper's whole comparison grid, then write the report.

Each variant lives in ``OUT/<variant>``. A variant whose training and evaluation
are complete is skipped, a half-trained one is resumed from its last checkpoint,
so re-running the same command after an interruption continues where it stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from sparta.config import ConfigError, load_config
from sparta.data import open_or_prepare
from sparta.evaluate import TASKS, Evaluation
from sparta.report import build_report
from sparta.runs import Run, RunError
from sparta.training import train_run
from sparta.variants import VARIANTS

log = logging.getLogger(__name__)


def _train(path: Path, cfg, store, progress: bool) -> Run:
    if (path / "config.yaml").exists():
        run = Run.open(path)
        if not run.same_config(cfg):  # data paths compared as places: a run keeps them relative to itself
            raise RunError(f"'{path}' was trained with another config; use another --out or delete it")
        if not run.is_complete:
            train_run(run, store, progress=progress, resume=run.last.exists())
        return run
    run = Run.create(cfg, path)
    train_run(run, store, progress=progress)
    return run


def reproduce(preset: str, out: str | Path, only: list[str] | None = None, overrides: list[str] | None = None,
              progress: bool = True) -> tuple[Path, Path]:
    """Train + evaluate each variant (``only`` restricts the list), then build ``report.md``/``report.html``."""
    out = Path(out)
    names = only or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    configs = {n: load_config(preset, [*(overrides or []), *VARIANTS[n].overrides], method=VARIANTS[n].method)
               for n in names}
    store = open_or_prepare(next(iter(configs.values())).data, progress)
    for name in tqdm(names, desc="variants", disable=not progress, position=0):
        log.info("variant %s: %s", name, VARIANTS[name].label)
        run = _train(out / name, configs[name], store, progress)
        if not (run.evaluation / "COMPLETE").exists():
            Evaluation(run, store, progress=progress).run_tasks(list(TASKS))
            (run.evaluation / "COMPLETE").touch()
    return build_report(out, preset, redraw=False)  # each evaluation drew its figures
