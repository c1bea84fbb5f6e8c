"""Run directories: where a training run keeps its config, checkpoints, metrics and figures.

::

    RUN/config.yaml            the fully resolved config (what was actually used)
    RUN/checkpoints/last.pt    resume state, rewritten atomically after every epoch
    RUN/checkpoints/best.pt    best-by-validation model of the final stage (used downstream)
    RUN/metrics.csv            one row per epoch and stage
    RUN/figures/               loss curves and evaluation figures
    RUN/evaluation/            downstream metrics (JSON/CSV) and tables
"""

from __future__ import annotations

import csv
import glob
import io
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from sparta.checkpoint import CheckpointError, atomic_write_bytes
from sparta.config import Config, ConfigError, DownstreamConfig, load_config_file
from sparta.errors import UserError
from sparta.families import FAMILIES
from sparta.locks import LOCK_NAME
from sparta.outputs import check_output_dir, foreign_entries, listing, remove_owned
from sparta.sources import SOURCES

log = logging.getLogger(__name__)

#: What a run writes: these top-level files, and these directories with files of these suffixes.
RUN_FILES = ("config.yaml", "metrics.csv", "COMPLETE")
RUN_DIRS = {"checkpoints": (".pt",), "figures": (".png", ".pdf", ".svg"),
            "evaluation": (".json", ".csv", ".md", ".npy", ".npz", ".png")}
EVALUATION_DIRS = {"maps": ".npz", "predictions": ".zarr", "scores": ".nc"}
"""The folders under ``evaluation/`` and what SPARTA writes in them (a ``.zarr`` store with all it holds)."""
_REMOTE = ("gs://", "gcs://", "s3://", "http://", "https://")


class RunError(UserError, ValueError):
    """A run directory cannot be created or resumed as asked."""


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name  # atomic_write_bytes's temporary files


def _owned_by_run(root: Path):
    def owned(entry: Path) -> bool:
        parts = entry.relative_to(root).parts
        if len(parts) == 1:
            if entry.is_dir() and not entry.is_symlink():
                return entry.name in RUN_DIRS
            return entry.name in RUN_FILES or _is_temporary(entry.name)
        if parts[0] == "evaluation" and len(parts) > 2 and parts[1] in EVALUATION_DIRS:
            top = parts[2]  # a file of the folder's suffix, or a store (.zarr) with everything in it
            return top.endswith(EVALUATION_DIRS[parts[1]]) or _is_temporary(top)
        if entry.is_dir():
            return len(parts) == 2 and parts[0] == "evaluation" and entry.name in EVALUATION_DIRS
        if len(parts) != 2:
            return False
        return entry.suffix in RUN_DIRS[parts[0]] or entry.name == "COMPLETE" or _is_temporary(entry.name)
    return owned


def is_run_directory(path: Path) -> bool:
    """Whether ``path`` is a SPARTA run: its config.yaml is a valid SPARTA config."""
    try:
        raw = yaml.safe_load((path / "config.yaml").read_text())
        if not isinstance(raw, dict) or not {"method", "data", "model", "train"} <= raw.keys():
            return False
        load_config_file(path / "config.yaml")
    except (OSError, ConfigError, ValueError, yaml.YAMLError):
        return False
    return True


def _local_path(value: str) -> bool:
    return value not in SOURCES and not value.startswith(_REMOTE)


def _relative_to_run(value: str, run: Path) -> str:
    """A relative path given from the current directory, rewritten relative to the run directory."""
    if not _local_path(value) or Path(value).is_absolute():
        return value
    return os.path.relpath(Path(value).absolute(), run.absolute())


def _data_paths(cfg: Config, run: Path) -> dict[str, str]:
    """``data.store`` and ``data.source`` of a saved config as places: relative ones are taken relative to ``run``
    (see :meth:`Run.open`)."""
    store, source = cfg.data.store, cfg.data.source
    if not Path(store).is_absolute():
        in_run, here = run.absolute() / store, Path(store).absolute()
        if not (in_run / "meta.json").exists() and (here / "meta.json").exists():
            log.info("data.store '%s' of run %s is used from the current directory (%s)", store, run, here)
            in_run = here
        store = os.path.normpath(in_run)
    if _local_path(source) and not Path(source).is_absolute() and glob.glob(str(run.absolute() / source)):
        source = os.path.normpath(run.absolute() / source)
    return {"store": store, "source": source}


def _clear_for_new_run(path: Path, overwrite: bool) -> None:
    """Empty ``path`` of a previous run's files for :meth:`Run.create`, or refuse: a directory that is not a run,
    a run without ``overwrite``, or a run beside files SPARTA did not write."""
    # the lock of the process creating the run (sparta.locks) is neither content nor foreign, and stays
    entries = [e for e in path.iterdir() if e.name != LOCK_NAME] if path.exists() else []
    if not entries:
        return
    owned = _owned_by_run(path)
    foreign = [name for name in foreign_entries(path, owned) if name != LOCK_NAME]
    if not is_run_directory(path):
        everything = sorted(e.name + ("/" if e.is_dir() else "") for e in entries)
        raise RunError(f"'{path}' is not empty and is not a SPARTA run (it holds {listing(everything)}); "
                       "SPARTA never deletes or overwrites files it did not write: choose a new or "
                       "empty directory for --out")
    if not overwrite:
        raise RunError(f"run directory '{path}' already exists; continue it with --resume {path}, "
                       "choose another --out, or pass --overwrite to replace it")
    if foreign:
        raise RunError(f"run directory '{path}' also holds files SPARTA did not write "
                       f"({listing(foreign)}); --overwrite replaces only a run's own files: move "
                       "those out, or choose another --out")
    remove_owned(path, owned)


@dataclass
class Run:
    path: Path
    config: Config

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def evaluation(self) -> Path:
        return self.path / "evaluation"

    @property
    def is_complete(self) -> bool:
        return (self.path / "COMPLETE").exists()

    @staticmethod
    def default_path(cfg: Config, root: str | Path = "runs") -> Path:
        label = f"{cfg.method}-{cfg.model.fusion}" if FAMILIES[cfg.method].has_fusion else cfg.method
        return Path(root) / f"{label}-{cfg.preset}-{datetime.now():%Y%m%d-%H%M%S}"

    @classmethod
    def create(cls, cfg: Config, path: str | Path | None = None, overwrite: bool = False) -> Run:
        """A new run directory at ``path``. An existing one is replaced only with ``overwrite``, only when it is
        a SPARTA run, and then only the files a run writes; anything else there makes this refuse.

        Relative ``data.store`` / ``data.source`` paths are written into config.yaml relative to the run
        directory, so the run finds its data from any working directory (:meth:`open`).
        """
        path = check_output_dir(Path(path) if path else cls.default_path(cfg))
        _clear_for_new_run(path, overwrite)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, cfg)
        run._save_config()
        return run

    def _save_config(self) -> None:
        data = {"store": _relative_to_run(self.config.data.store, self.path),
                "source": _relative_to_run(self.config.data.source, self.path)}
        saved = self.config.model_copy(update={"data": self.config.data.model_copy(update=data)})
        atomic_write_bytes(self.path / "config.yaml", lambda fh: fh.write(saved.to_yaml().encode()))

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """Open a run; relative data paths in its config are taken relative to the run directory.

        Runs written before that rule kept them relative to the directory they were started from:
        such a path is used from the current directory when only there it names an existing store.
        """
        path = Path(path)
        if not (path / "config.yaml").is_file():
            hint = ("it is a file" if path.is_file() else "no config.yaml") if path.exists() else "it does not exist"
            raise RunError(f"'{path}' is not a SPARTA run directory ({hint}); pass the directory that holds "
                           "the run's config.yaml")
        cfg = load_config_file(path / "config.yaml")
        return cls(path, cfg.model_copy(update={"data": cfg.data.model_copy(update=_data_paths(cfg, path))}))

    def trained_as(self, cfg: Config) -> bool:
        """Whether ``cfg`` trains this run's model: the same config but for its downstream settings, the data
        paths compared as the places they name."""
        def places(c: Config) -> dict:
            dump = c.model_dump(mode="json", exclude={"downstream"})
            for key in ("store", "source"):
                if _local_path(dump["data"][key]):
                    dump["data"][key] = os.path.normpath(Path(dump["data"][key]).absolute())
            return dump
        return places(self.config) == places(cfg)

    def set_downstream(self, downstream: DownstreamConfig) -> bool:
        """Evaluate this run with ``downstream`` from now on (config.yaml rewritten); whether that changed them.
        The trained model does not depend on them (they are outside the config's digest)."""
        if downstream == self.config.downstream:
            return False
        self.config = self.config.model_copy(update={"downstream": downstream})
        self._save_config()
        return True

    def require_last(self) -> Path:
        if not self.last.is_file():
            raise CheckpointError(f"run '{self.path}' has no checkpoint yet ({self.last} is missing: it stopped "
                                  f"before its first epoch finished); `sparta train --resume {self.path}` trains "
                                  "it from the start with its saved config")
        return self.last

    @property
    def has_checkpoints(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("*.pt"))

    def require_best(self) -> Path:
        if not self.best.is_file():
            raise CheckpointError(f"run '{self.path}' has no trained model ({self.best} is missing); "
                                  "finish training first (sparta train --resume RUN)")
        return self.best

    def mark_complete(self) -> None:
        (self.path / "COMPLETE").write_text(datetime.now().isoformat())

    def write_metrics(self, history: list[dict]) -> None:
        """Rewrite metrics.csv from the full history (kept in the checkpoint, so resume stays consistent)."""
        columns: list[str] = []
        for row in history:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        atomic_write_bytes(self.path / "metrics.csv", lambda fh: fh.write(buf.getvalue().encode()))

    def write_yaml(self, name: str, payload: dict) -> None:
        atomic_write_bytes(self.path / name, lambda fh: fh.write(yaml.safe_dump(payload, sort_keys=False).encode()))
