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
import io
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from sparta.checkpoint import CheckpointError, atomic_write_bytes
from sparta.config import Config, load_config_file


class RunError(ValueError):
    """A run directory cannot be created or resumed as asked."""


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
        label = cfg.method if cfg.method == "autoencoder" else f"sparta-{cfg.model.fusion}"
        return Path(root) / f"{label}-{cfg.preset}-{datetime.now():%Y%m%d-%H%M%S}"

    @classmethod
    def create(cls, cfg: Config, path: str | Path | None = None, overwrite: bool = False) -> Run:
        path = Path(path) if path else cls.default_path(cfg)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise RunError(f"run directory '{path}' already exists; continue it with --resume {path}, "
                               "choose another --out, or pass --overwrite to replace it")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, cfg)
        atomic_write_bytes(path / "config.yaml", lambda fh: fh.write(cfg.to_yaml().encode()))
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise RunError(f"'{path}' is not a SPARTA run directory (no config.yaml)")
        return cls(path, load_config_file(path / "config.yaml"))

    def require_last(self) -> Path:
        if not self.last.is_file():
            raise CheckpointError(f"run '{self.path}' has no checkpoint to resume from ({self.last} is missing); "
                                  "start it again without --resume")
        return self.last

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
