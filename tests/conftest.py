"""Shared fixtures: a tiny prepared store whose values encode their day index; each test worker's threads."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sparta.data.store import PreparedStore, write_store

TINY_DAYS, TINY_LAT, TINY_LON = 300, 8, 16
TINY_VARIABLES = ["2m_temperature", "geopotential@850"]


def pytest_configure(config) -> None:
    """The suite runs one pytest-xdist worker per core (pyproject's addopts): each worker, and the commands its
    tests start, get their share of the cores rather than all of them each. OMP_NUM_THREADS, where set, decides."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def tiny_fields() -> np.ndarray:
    """(300, 2, 8, 16): day t, channel c = t + 1000 c + a zero-mean longitude wave (exact spatial mean)."""
    t = np.arange(TINY_DAYS, dtype=np.float32)[:, None, None, None]
    c = np.arange(len(TINY_VARIABLES), dtype=np.float32)[None, :, None, None]
    lon = np.arange(TINY_LON)[None, None, None, :]
    lat = np.arange(TINY_LAT)[None, None, :, None]
    wave = np.sin(2 * np.pi * lon / TINY_LON) * (1 + lat)
    return (t + 1000 * c + wave).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> PreparedStore:
    """300 days from 2000-01-01, 2 channels, 8x16 grid; splits train 0-180, val 180-240, test 240-300."""
    times = np.arange(np.datetime64("2000-01-01"), np.datetime64("2000-01-01") + TINY_DAYS)
    lat = np.linspace(-78.75, 78.75, TINY_LAT)
    lon = np.arange(TINY_LON) * 360.0 / TINY_LON
    fields = tiny_fields()
    return write_store(tmp_path_factory.mktemp("store"), [fields[:128], fields[128:]], times,
                       TINY_VARIABLES, lat, lon, source="test")


@pytest.fixture(scope="session")
def micro_store(tmp_path_factory) -> PreparedStore:
    """The micro preset's synthetic record (4 years, 5 variables, 64x32), prepared once per session."""
    from sparta.config import load_config
    from sparta.data import prepare_from_config

    return prepare_from_config(load_config("micro").data, tmp_path_factory.mktemp("micro") / "store",
                               progress=False)
