"""Train and evaluate the paper's whole comparison grid, then write the report.

Each variant lives in ``OUT/<variant>``. A variant whose training and evaluation
are complete is skipped, a half-trained one is resumed from its last checkpoint,
so re-running the same command after an interruption continues where it stopped.
With ``jobs > 1`` the variants run that many at a time, each in its own process
with its share of the CPU threads.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sparta.config import Config, ConfigError, load_config
from sparta.data import open_or_prepare
from sparta.data.store import Store, open_store
from sparta.evaluation import TASKS, Evaluation, run_tasks
from sparta.locks import lock_directory
from sparta.report import build_report
from sparta.runs import Run, RunError
from sparta.training import train_run
from sparta.variants import VARIANTS

log = logging.getLogger(__name__)


def _train(path: Path, cfg, store, progress: bool) -> Run:
    if (path / "config.yaml").exists():
        run = Run.open(path)
        if not run.trained_as(cfg):  # data paths compared as places: a run keeps them relative to itself
            raise RunError(f"'{path}' was trained with another config; use another --out or delete it")
        if run.set_downstream(cfg.downstream):  # other downstream settings: the same model, evaluated again
            log.info("%s: downstream settings changed; its evaluation runs again", path)
            (run.evaluation / "COMPLETE").unlink(missing_ok=True)
        if not run.is_complete:
            train_run(run, store, progress=progress, resume=run.last.exists())
        return run
    run = Run.create(cfg, path)
    train_run(run, store, progress=progress)
    return run


def _variant(name: str, path: Path, cfg: Config, store: Store, progress: bool) -> None:
    """Train (or resume) and evaluate one variant; a finished one is left as it is."""
    log.info("variant %s: %s", name, VARIANTS[name].label)
    with lock_directory(path):  # a `sparta train` or `evaluate` of this run meanwhile is refused
        run = _train(path, cfg, store, progress)
        if not (run.evaluation / "COMPLETE").exists():
            run_tasks(Evaluation(run, store, progress=progress), list(TASKS))
            (run.evaluation / "COMPLETE").touch()


def _worker_setup(threads: int, level: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=level)


def _variant_in_worker(name: str, path: Path, cfg: Config, store_path: str) -> None:
    for handler in logging.getLogger().handlers:  # the variants' log lines interleave: name each one's
        handler.setFormatter(logging.Formatter(f"%(levelname)-8s [{name}] %(message)s"))
    _variant(name, path, cfg, open_store(store_path), progress=False)


def _run_parallel(names: list[str], configs: dict[str, Config], store: Store, out: Path, jobs: int,
                  progress: bool) -> None:
    """``jobs`` variants at a time in spawned processes, each with ``1/jobs`` of this process's threads
    (small models gain little from a second thread: the quick stage-1 step takes 0.07 s on 2 threads,
    0.11 s on one). The first failure cancels the variants not yet started and is raised once the
    running ones end."""
    threads = max(1, torch.get_num_threads() // jobs)
    log.info("%d variants, %d at a time with %d thread(s) each", len(names), jobs, threads)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_setup,
                             initargs=(threads, logging.getLogger("sparta").getEffectiveLevel())) as pool:
        # late fusion's steps (one encoder per variable) cost 2.5-3.4x early fusion's: start it first
        ordered = sorted(names, key=lambda n: configs[n].model.fusion == "early")
        futures = {pool.submit(_variant_in_worker, n, out / n, configs[n], str(store.path)): n for n in ordered}
        with tqdm(total=len(futures), desc="variants", disable=not progress) as bar:
            for future in as_completed(futures):
                if future.exception() is not None:
                    for other in futures:
                        other.cancel()
                    raise future.exception()
                log.info("variant %s finished", futures[future])
                bar.update()


def reproduce(preset: str, out: str | Path, only: list[str] | None = None, overrides: list[str] | None = None,
              progress: bool = True, jobs: int = 1) -> tuple[Path, Path]:
    """Train + evaluate each variant (``only`` restricts the list; ``jobs`` at a time), then build
    ``report.md``/``report.html``."""
    out = Path(out)
    names = only or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    configs = {n: load_config(preset, [*(overrides or []), *VARIANTS[n].overrides], method=VARIANTS[n].method)
               for n in names}
    with lock_directory(out):  # a second reproduce into the same folder is refused at once
        store = open_or_prepare(next(iter(configs.values())).data, progress)
        if min(jobs, len(names)) > 1:
            _run_parallel(names, configs, store, out, min(jobs, len(names)), progress)
        else:
            for name in tqdm(names, desc="variants", disable=not progress, position=0):
                _variant(name, out / name, configs[name], store, progress)
        return build_report(out, preset, redraw=False)  # each evaluation drew its figures
