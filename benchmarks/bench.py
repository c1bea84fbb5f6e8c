"""SPARTA speed benchmark (not a test): training-step split, data preparation, embedding, scale curve.

    python benchmarks/bench.py [--quick] [--record-years 65] [--out benchmarks/results]

Writes ``bench.json`` (every number, raw step times included) and ``bench.md`` (tables) under
``--out``. Each measured case runs in a fresh spawned process, so its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that process) is its own; ``base RSS`` is the
same figure right after the imports. Timings: ``time.perf_counter``, warm-up steps excluded,
median over the measured steps (the step total is the median of the totals, not the sum of the
phase medians). Load from other processes skews everything: the load average is recorded at the
start and at the end.

Training step = stage 1 of the trainer (``sparta.training.Step.terms``): three augmented views
(anchor unmasked, t-delta and t+delta masked), one encoder pass over the 3B images, projector,
``temporal_contrastive_loss + cycle_loss``, backward, Adam step on encoder + projector. Phases:

* data: ``next()`` on a ``DataLoader(ContrastiveDataset, batch_sampler=ContrastiveBatchSampler)``
  over a prepared synthetic store, ``num_workers=0`` (the default config), i.e. in the main
  process; for the scale curve the inputs are random tensors and ``data`` is their creation;
* augment: ``Augmenter.view`` for the 3 views; forward: encode + project + losses;
* backward: ``loss.backward()`` + ``optimizer.step()``.

Samples/s counts batch members (126 = 42 anchor/soft/hard triplets), each of which is encoded 3 times.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

BATCH = 126
VARIABLES_5 = ["2m_temperature", "geopotential@850", "u_component_of_wind@850", "v_component_of_wind@850",
               "specific_humidity@850"]
# 13 channels the synthetic generator supports (it has no 10 m winds): t2m, the 5 level variables at
# 500 and 850 hPa, and z/t at 250 hPa.
VARIABLES_13 = ["2m_temperature"] + [f"{v}@{lev}" for v in ("geopotential", "temperature", "u_component_of_wind",
                                                             "v_component_of_wind", "specific_humidity")
                                     for lev in (500, 850)] + ["geopotential@250", "temperature@250"]
SCALE_GRIDS = ["64x32", "128x64", "240x121"]


# ------------------------------------------------------------------ helpers (run in the case processes)
def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _memory(device) -> dict:
    import torch

    out = {"peak_rss_mib": round(_rss_mib(), 1)}
    if device.type == "cuda":
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _mode_overrides(mode: str) -> list[str]:
    """The augment mode; paper mode (144x72 views) cannot start from the native grid's EOFs, so its models start
    from random linear paths (the step's cost is the same)."""
    return [f"augment.mode={mode}"] + (["model.linear_init=random"] if mode == "paper" else [])


def _case_train(size: str, mode: str, steps: int, warmup: int, store_path: str | None = None,
                grid: str = "64x32", variables: list[str] | None = None, batch: int = BATCH) -> dict:
    """Stage-1 training steps; phases timed separately; from a store or from random tensors."""
    import torch
    from torch.utils.data import DataLoader

    from sparta.augment import Augmenter
    from sparta.config import load_config
    from sparta.data.store import PreparedStore
    from sparta.data.variables import parse_variables
    from sparta.grids import Grid, parse_grid
    from sparta.losses import cycle_loss, temporal_contrastive_loss
    from sparta.models import SpartaModel
    from sparta.sampling import ContrastiveBatchSampler, ContrastiveDataset
    from sparta.seeding import generator
    from sparta.training import fast_path

    logging.disable(logging.WARNING)  # the sampler's short-split notice
    base_rss = _rss_mib()
    device = _device()
    cfg = load_config(size, overrides=[*_mode_overrides(mode), f"train.batch_size={batch}"])
    if store_path is not None:
        store = PreparedStore.open(store_path)
        channels, n_lat, n_lon = list(store.channels), len(store.lat), len(store.lon)
        start, stop = store.split_range("train")
        sampler = ContrastiveBatchSampler(stop - start, batch, cfg.sampler, seed=0, hard_negatives=True)
        loader = DataLoader(ContrastiveDataset(store, "train"), batch_sampler=sampler, num_workers=0,
                            pin_memory=device.type == "cuda")

        def batches():
            epoch = 0
            while True:
                sampler.set_epoch(epoch)
                yield from loader
                epoch += 1

        source = batches()

        def next_batch():
            b = next(source)
            return b["minus"], b["anchor"], b["plus"]
    else:
        channels = [v.short for v in parse_variables(variables or VARIABLES_5)]
        n_lon, n_lat = parse_grid(grid)
        data_gen = torch.Generator().manual_seed(0)

        def next_batch():
            return tuple(torch.randn(batch, len(channels), n_lat, n_lon, generator=data_gen) for _ in range(3))

    torch.manual_seed(0)
    model = SpartaModel(cfg.model, [Grid(tuple(channels), n_lat, n_lon)]).to(device).train()
    model.decoder.requires_grad_(False)
    precision, channels_last = fast_path(cfg, device, model)  # the trainer's settings (bf16 where native)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
                              enabled=precision != "fp32")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    aug = Augmenter(cfg.augment, n_lat, n_lon)
    gen = generator(0)
    times: dict[str, list[float]] = {k: [] for k in ("data", "augment", "forward", "backward", "total")}
    for step in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        minus, anchor, plus = (x.to(device, non_blocking=True) for x in next_batch())
        _sync(device)
        t1 = time.perf_counter()
        views = [aug.view(anchor, gen, masked=False), aug.view(minus, gen, masked=True),
                 aug.view(plus, gen, masked=True)]
        _sync(device)
        t2 = time.perf_counter()
        with autocast:
            h = model.encode(torch.cat(views).contiguous(memory_format=memory_format))
            z = model.project(h).float()
            n = anchor.shape[0]
            loss = (temporal_contrastive_loss(z[:n], z[n:2 * n], z[2 * n:], cfg.loss.temperature)
                    + cycle_loss(*(part.float() for part in (h[n:2 * n], h[:n], h[2 * n:]))))
        _sync(device)
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        t4 = time.perf_counter()
        if step >= warmup:
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                times[k].append(v)
    med = {k: _median(v) for k, v in times.items()}
    return {"size": size, "mode": mode, "grid": f"{n_lon}x{n_lat}", "channels": len(channels), "batch": batch,
            "input_hw": list(aug.input_hw), "precision": precision, "channels_last": channels_last,
            "compiled": device.type == "cuda" if cfg.train.compile is None else cfg.train.compile,
            "source": "store" if store_path else "random", "steps": steps,
            "warmup": warmup, "median_s": med, "samples_per_s": batch / med["total"],
            "data_aug_fraction": (med["data"] + med["augment"]) / med["total"], "raw_s": times,
            "base_rss_mib": round(base_rss, 1), **_memory(device)}


def _case_embed(size: str, mode: str, n_batches: int, batch: int = 256) -> dict:
    """Eval-mode encoding of complete 64x32 fields (Augmenter.encoder_input, then encode), batches of 256."""
    import torch

    from sparta.augment import Augmenter
    from sparta.config import load_config
    from sparta.data.variables import parse_variables
    from sparta.grids import Grid
    from sparta.models import SpartaModel

    base_rss = _rss_mib()
    device = _device()
    cfg = load_config(size, overrides=_mode_overrides(mode))
    channels = [v.short for v in parse_variables(VARIABLES_5)]
    torch.manual_seed(0)
    model = SpartaModel(cfg.model, [Grid(tuple(channels), 32, 64)]).to(device).eval()
    aug = Augmenter(cfg.augment, 32, 64)
    x = torch.randn(batch, len(channels), 32, 64)
    times = []
    with torch.no_grad():
        for i in range(1 + n_batches):  # one warm-up batch
            _sync(device)
            t0 = time.perf_counter()
            model.encode(aug.encoder_input(x.to(device)))
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
    med = _median(times)
    return {"size": size, "mode": mode, "input_hw": list(aug.input_hw), "batch": batch, "batches": n_batches,
            "median_batch_s": med, "samples_per_s": batch / med, "raw_s": times,
            "base_rss_mib": round(base_rss, 1), **_memory(device)}


def _case_prepare(years: int, out: str) -> dict:
    """prepare_from_config of a synthetic record (default 5 variables, 64x32): days/s."""
    from sparta.config import DataConfig
    from sparta.data import prepare_from_config

    logging.disable(logging.WARNING)
    base_rss = _rss_mib()
    data = DataConfig(years=years, store=out)
    t0 = time.perf_counter()
    store = prepare_from_config(data, out, progress=False)
    seconds = time.perf_counter() - t0
    n_days = len(store.times)
    return {"years": years, "days": n_days, "seconds": seconds, "days_per_s": n_days / seconds,
            "grid": data.grid, "variables": len(data.variables), "base_rss_mib": round(base_rss, 1),
            "peak_rss_mib": round(_rss_mib(), 1)}


def _rss_parts_mib() -> dict:
    """Resident memory now, split into anonymous (the process's own arrays) and file-backed pages
    (memory-mapped store pages the kernel may drop at any time), from /proc/self/status (Linux)."""
    fields = {"RssAnon": "rss_anon_mib", "RssFile": "rss_file_mib"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            out[fields[key]] = round(int(value.split()[0]) / 1024, 1)
    return out


class _PeakAnonymous:
    """Highest anonymous RSS while the block runs, polled every 10 ms in a thread: ``ru_maxrss`` also
    counts the memory-mapped store's pages, which are the file on disk, not a copy of the data."""

    def __enter__(self):
        self.peak_mib, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_mib = max(self.peak_mib, _rss_parts_mib().get("rss_anon_mib", 0.0))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _case_record(years: int, out: str, batch: int = BATCH) -> dict:
    """A long synthetic record: streamed preparation, then one full epoch of the training data path.

    The epoch reads every batch the trainer would (DataLoader over ContrastiveDataset, memmap
    reads, normalisation) without the model, so its memory is the data path's alone.
    """
    from torch.utils.data import DataLoader

    from sparta.config import DataConfig, load_config
    from sparta.data import prepare_from_config
    from sparta.sampling import ContrastiveBatchSampler, ContrastiveDataset

    logging.disable(logging.WARNING)
    base_rss = _rss_mib()
    t0 = time.perf_counter()
    with _PeakAnonymous() as prepare_anon:
        store = prepare_from_config(DataConfig(years=years, store=out), out, progress=False)
    prepared_s, prepare_peak = time.perf_counter() - t0, _rss_mib()
    start, stop = store.split_range("train")
    sampler = ContrastiveBatchSampler(stop - start, batch, load_config("quick").sampler, seed=0, hard_negatives=True)
    t0, n_batches = time.perf_counter(), 0
    with _PeakAnonymous() as epoch_anon:
        for _ in DataLoader(ContrastiveDataset(store, "train"), batch_sampler=sampler, num_workers=0):
            n_batches += 1
    return {"years": years, "days": len(store.times), "store_mib": round(store.fields.nbytes / 2**20, 1),
            "prepare_s": round(prepared_s, 1), "prepare_peak_rss_mib": round(prepare_peak, 1),
            "prepare_peak_anon_mib": prepare_anon.peak_mib, "epoch_batches": n_batches,
            "epoch_s": round(time.perf_counter() - t0, 1), "epoch_peak_anon_mib": epoch_anon.peak_mib,
            "base_rss_mib": round(base_rss, 1), "peak_rss_mib": round(_rss_mib(), 1), **_rss_parts_mib()}


def _run_case(name: str, kwargs: dict) -> dict:
    fn = {"train": _case_train, "embed": _case_embed, "prepare": _case_prepare, "record": _case_record}[name]
    return fn(**kwargs)


# ------------------------------------------------------------------ driver (parent process)
def hardware() -> dict:
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": model, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform()}


def _isolated(name: str, **kwargs) -> dict:
    """Run one case in a fresh spawned process (own ru_maxrss); print a one-line summary."""
    tic = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        result = pool.submit(_run_case, name, kwargs).result()
    result["wall_s"] = round(time.perf_counter() - tic, 1)
    shown = {k: v for k, v in result.items() if k not in ("raw_s",)}
    print(f"[{name}] {json.dumps(shown, default=lambda x: round(x, 4) if isinstance(x, float) else str(x))}",
          flush=True)
    return result


def run(quick: bool, out: Path, record_years: int = 0) -> dict:
    load_start = os.getloadavg()
    tic = time.perf_counter()
    results: dict = {"hardware": hardware(), "quick": quick, "load_avg_start": load_start,
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    steps_small, steps_paper, warmup = (3, 2, 1) if quick else (10, 3, 2)
    years = 2 if quick else 4
    tmp = Path(tempfile.mkdtemp(prefix="sparta-bench-"))
    try:
        store = str(tmp / "store")
        results["prepare"] = _isolated("prepare", years=years, out=store)
        results["train"] = []
        for size in ("quick", "paper"):
            for mode in ("native", "paper"):
                steps = steps_small if size == "quick" else steps_paper
                results["train"].append(_isolated("train", size=size, mode=mode, steps=steps, warmup=warmup,
                                                  store_path=store))
        results["embed"] = [_isolated("embed", size=size, mode=mode, n_batches=2 if quick else 5)
                            for size in ("quick", "paper") for mode in ("native", "paper")]
        results["scale"] = []
        for grid in SCALE_GRIDS:
            for variables in (VARIABLES_5, VARIABLES_13):
                steps = 2 if quick and grid != SCALE_GRIDS[0] else steps_small  # big grids: ~10x the 64x32 step
                results["scale"].append(_isolated("train", size="quick", mode="native", steps=steps,
                                                  warmup=warmup, grid=grid, variables=variables))
        if record_years:
            results["record"] = _isolated("record", years=record_years, out=str(tmp / "record"))
        results["skipped"] = ["scale curve in paper augment mode (240x121 -> 540x272 inputs) and at the paper "
                              "model size: minutes per step on this CPU; the curve uses native mode, quick size"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_avg_end"] = os.getloadavg()
    results["total_s"] = round(time.perf_counter() - tic, 1)
    return results


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if x < 100 else f"{x:.0f}"


def markdown(r: dict) -> str:
    hw = r["hardware"]
    la0 = ", ".join(f"{x:.2f}" for x in r["load_avg_start"])
    la1 = ", ".join(f"{x:.2f}" for x in r["load_avg_end"])
    lines = [
        f"# SPARTA benchmark ({'--quick' if r['quick'] else 'full'}, {r['started']})", "",
        f"- CPU: {hw['cpu_model']}, {hw['usable_cores']} usable / {hw['logical_cores']} logical cores; "
        f"torch {hw['torch']} ({hw['torch_threads']} threads); CUDA: {hw['cuda_device'] or 'none'}; "
        f"Python {hw['python']}",
        f"- load average (1, 5, 15 min): start {la0}; end {la1}"
        + ("  **(machine busy at the start: numbers are inflated by other processes)**"
           if r["load_avg_start"][0] > 0.5 * hw["usable_cores"] else ""),  # the end value includes this run
        f"- whole run: {r['total_s']:.0f} s; every case in a fresh process; peak RSS = ru_maxrss of that process "
        "(base RSS = after imports)", "",
        "## Contrastive training step (stage 1), batch 126 = 42 triplets, 5 channels, 64x32 store", "",
        "| model | augment | encoder input | samples/s | step s | data s | augment s | forward s | "
        "backward+opt s | data+aug | peak RSS MiB | steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in r["train"]:
        m = t["median_s"]
        frac = f"{100 * t['data_aug_fraction']:.1f}%" + (" **>10%**" if t["data_aug_fraction"] > 0.10 else "")
        lines.append(f"| {t['size']} | {t['mode']} | {t['input_hw'][1]}x{t['input_hw'][0]} | {_f(t['samples_per_s'], 1)} | "
                     f"{_f(m['total'])} | {_f(m['data'])} | {_f(m['augment'])} | {_f(m['forward'])} | "
                     f"{_f(m['backward'])} | {frac} | {t['peak_rss_mib']:.0f} | {t['steps']} (+{t['warmup']} warm-up) |")
    p = r["prepare"]
    lines += ["", "## Data preparation", "",
              f"`prepare_from_config`, synthetic, {p['variables']} variables, {p['grid']}, {p['years']} years "
              f"({p['days']} days): {p['seconds']:.1f} s = **{p['days_per_s']:.0f} days/s**, peak RSS "
              f"{p['peak_rss_mib']:.0f} MiB", "",
              "## Embedding (eval, no grad, complete 64x32 fields, batches of 256)", "",
              "| model | augment | encoder input | samples/s | s per batch | peak RSS MiB |",
              "|---|---|---|---|---|---|"]
    for e in r["embed"]:
        lines.append(f"| {e['size']} | {e['mode']} | {e['input_hw'][1]}x{e['input_hw'][0]} | "
                     f"{_f(e['samples_per_s'], 1)} | {_f(e['median_batch_s'])} | {e['peak_rss_mib']:.0f} |")
    lines += ["", "## Scale curve (quick model, native augment, random inputs, batch 126)", "",
              "| grid | channels | samples/s | step s | data s | augment s | forward s | backward+opt s | data+aug "
              "| peak RSS MiB | steps |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in r["scale"]:
        m = s["median_s"]
        frac = f"{100 * s['data_aug_fraction']:.1f}%" + (" **>10%**" if s["data_aug_fraction"] > 0.10 else "")
        lines.append(f"| {s['grid']} | {s['channels']} | {_f(s['samples_per_s'], 1)} | {_f(m['total'])} | "
                     f"{_f(m['data'])} | {_f(m['augment'])} | {_f(m['forward'])} | {_f(m['backward'])} | {frac} | "
                     f"{s['peak_rss_mib']:.0f} | {s['steps']} (+{s['warmup']} warm-up) |")
    if "record" in r:
        rec = r["record"]
        lines += ["", f"## Long record: {rec['years']} synthetic years ({rec['days']} days, store "
                  f"{rec['store_mib']:.0f} MiB)", "",
                  f"Streamed preparation: {rec['prepare_s']:.0f} s, peak anonymous memory "
                  f"{rec['prepare_peak_anon_mib']:.0f} MiB. One full epoch of the training data path "
                  f"({rec['epoch_batches']} batches of 126, memmap reads): {rec['epoch_s']:.0f} s, peak anonymous "
                  f"memory {rec['epoch_peak_anon_mib']:.0f} MiB. Peak RSS {rec['peak_rss_mib']:.0f} MiB counts "
                  f"the mapped store pages too (at the end {rec['rss_file_mib']:.0f} MiB file-backed, "
                  f"{rec['rss_anon_mib']:.0f} MiB anonymous): those are the file, which the kernel can drop."]
    lines += ["", "Scale-curve `data` is `torch.randn` of the three inputs (no store), not a disk read.",
              f"13 channels: {', '.join(VARIABLES_13)}.", ""]
    lines += [f"Skipped: {s}." for s in r.get("skipped", [])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and a shorter record (< 5 min on 2 idle cores)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="directory for bench.json/bench.md")
    parser.add_argument("--render", type=Path, default=None, help="only rewrite bench.md from this bench.json")
    parser.add_argument("--record-years", type=int, default=0,
                        help="also prepare this many synthetic years and read one full training epoch of them "
                             "(memory of a long record; 65 years take about 4 minutes here)")
    args = parser.parse_args(argv)
    results = (json.loads(args.render.read_text()) if args.render
               else run(args.quick, args.out, args.record_years))
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.render:
        (args.out / "bench.json").write_text(json.dumps(results, indent=1))
    md = markdown(results)
    (args.out / "bench.md").write_text(md)
    print(md)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")


if __name__ == "__main__":
    main()
