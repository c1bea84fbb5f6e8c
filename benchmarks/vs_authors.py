"""Our training step beside the authors', stage by stage, at the identical configuration (not a test).

    python benchmarks/vs_authors.py --authors PATH/TO/SPARTA [--steps 4] [--warmup 1]
        [--stages pretrain,blend,decoder,autoencoder] [--authors-site DIR] [--out DIR]

``--authors`` is a checkout of the authors' public repository (github.com/nathanwbailey/SPARTA); nothing
of it is vendored here and nothing is downloaded. Their code needs ``torchvision`` and
``pytorch-metric-learning``; if those are not in this environment, install them somewhere else
(``pip install --no-deps --target DIR torchvision==<the one built for your torch> pytorch-metric-learning``)
and pass ``--authors-site DIR``: only the authors' processes see it.

Configuration (the paper's, as both codes run it): batch 126 (42 anchor/hard/soft triplets), 5 variables,
views at 144x72, ResNet-18 width 64 with GroupNorm, embedding 1000, projector to 128, NT-Xent (tau 0.3)
+ cycle loss, Adam (lr 1e-4; autoencoder 1e-3), decoder to the native 64x32 grid. Per stage:

* pretrain: 3 views -> encoder + projector, NT-Xent + cycle; encoder and projector learn.
* blend: 3 views + a masked field -> encoder, projector, decoder; contrastive + view and masked
  reconstruction; everything learns.
* decoder: a masked field -> frozen encoder -> decoder; the decoder learns.
* autoencoder: a masked field -> encoder -> decoder; both learn.

The authors' side runs their own training functions (``train.train_model``,
``train_decoder.train_encoder_decoder``, ``train_decoder.train_decoder``,
``autoencoder_sampling/train.train_autoencoder``) for one epoch over a list of cached batches of the
shapes their dataset yields (random values, already augmented: their augmentation runs in DataLoader
workers, so it is left out of their time). A step is timed from the moment their loop takes a batch
to the end of its ``optimizer.step()``. Our side runs the trainer's own step
(``Step.terms`` + backward + Adam) on a cached batch of a prepared synthetic store, with the
trainer's default settings (``train.precision=auto``: bf16 on a CPU with native bf16); our
augmentation (crop, resize, masks) runs inside our step and is counted in our time.

Every (side, stage) runs in its own child process of this one, one after another, so the two never
compete for the cores; the load average is printed before and after (other processes inflate both).
Timings: median of ``--steps`` steps after ``--warmup`` warm-up steps, wall clock and the process's
CPU time (``time.process_time``, all its threads): on cores shared with other work the wall clock
mostly measures waiting, the CPU time much less so (both sides use torch's default thread count).
Output: a table on stdout and ``vs_authors.json`` under ``--out`` (raw step times included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("pretrain", "blend", "decoder", "autoencoder")
BATCH, TRIPLETS, CHANNELS = 126, 42, 5
ENC_HW, NATIVE_HW = (144, 72), (64, 32)  # the authors' (H, W) = (longitude, latitude)
AUTHORS_FOLDER = {"pretrain": "simclr_cycle_loss_sampling", "blend": "simclr_cycle_loss_sampling",
                  "decoder": "simclr_cycle_loss_sampling", "autoencoder": "autoencoder_sampling"}


# ------------------------------------------------------------------ the authors' side (child process)
def _import_torchvision() -> bool:
    """Import torchvision; True when its detection-op meta kernels had to be skipped.

    A torchvision wheel built for another torch build (CUDA wheel, CPU torch) fails to load its C
    extension and then fails registering meta kernels for detection ops (``torchvision::nms``). The
    authors' code uses only ``torchvision.models.resnet18`` (pure Python), so those registrations are
    skipped in that case; nothing else changes.
    """
    import types

    try:
        import torchvision  # noqa: F401
        return False
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import torchvision  # noqa: F401
    return True


class _Timed:
    """A loader over ``n`` copies of one cached batch that records when the loop takes each batch."""

    def __init__(self, batch, n: int):
        self.batch, self.n, self.taken = batch, n, []

    def __iter__(self):
        for _ in range(self.n):
            self.taken.append((time.perf_counter(), time.process_time()))
            yield self.batch


def _authors_case(authors: str, stage: str, steps: int, warmup: int) -> dict:
    import torch

    folder = Path(authors) / AUTHORS_FOLDER[stage]
    sys.path[:0] = [str(folder), str(Path(authors))]
    shim = _import_torchvision()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator().manual_seed(0)

    def rand(hw):
        return torch.randn(TRIPLETS, 3, CHANNELS, *hw, generator=gen)

    done: list[float] = []

    def timed_step(optimizer):
        step = optimizer.step

        def wrapped(*args, **kwargs):
            out = step(*args, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            done.append((time.perf_counter(), time.process_time()))
            return out
        optimizer.step = wrapped
        return optimizer

    torch.manual_seed(0)
    n = warmup + steps
    save = str(Path(tempfile.mkdtemp()) / "model.pth")
    if stage == "autoencoder":
        from model import AutoEncoder
        from train import train_autoencoder

        model = AutoEncoder(CHANNELS, 128).to(device)
        opt = timed_step(torch.optim.Adam(model.parameters(), lr=1e-3))
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=10, threshold=0.0001)
        loader = _Timed((rand(NATIVE_HW), rand(ENC_HW)), n)
        train_autoencoder(model, 1, loader, [], opt, sched, device, torch.nn.MSELoss(), model_save_path=save)
    else:
        from model_decoder import SIMCLR, SIMCLRDecoder
        from pytorch_metric_learning.losses import NTXentLoss, SelfSupervisedLoss

        contrastive, mse = SelfSupervisedLoss(NTXentLoss(temperature=0.3)), torch.nn.MSELoss()
        model = SIMCLR(in_channels=CHANNELS, latent_dim=128).to(device)
        views = {"x_pos_1": rand(ENC_HW), "x_pos_2": rand(ENC_HW), "x_pos_3": rand(ENC_HW),
                 "X_enc": rand(ENC_HW), "X_delta": rand(ENC_HW), "X_minus_delta": rand(ENC_HW)}
        if stage == "pretrain":
            from train import train_model

            opt = timed_step(torch.optim.Adam(model.parameters(), lr=1e-4))
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=10, threshold=0.0001)
            loader = _Timed(views, n)
            train_model(model, 1, loader, [], opt, sched, device, contrastive, mse, model_save_path=save)
        else:
            from train_decoder import train_decoder, train_encoder_decoder

            model = SIMCLRDecoder(in_channels=CHANNELS, model=model).to(device)
            batch = {**views, "X_orig": rand(NATIVE_HW), "X_masked": rand(ENC_HW),
                     "X_masked_delta": rand(NATIVE_HW), "X_masked_delta_2": rand(NATIVE_HW)}
            loader = _Timed(batch, n)
            params = model.parameters() if stage == "blend" else model.decoder.parameters()
            opt = timed_step(torch.optim.Adam(params, lr=1e-4))
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=10, threshold=0.0001)
            if stage == "blend":
                train_encoder_decoder(model, 1, loader, [], opt, sched, device, contrastive, mse, mse,
                                      model_save_path=save)
            else:
                train_decoder(model, 1, loader, [], opt, sched, device, mse, model_save_path=save)
    times = [end[0] - start[0] for start, end in zip(loader.taken, done)][warmup:]
    cpu = [end[1] - start[1] for start, end in zip(loader.taken, done)][warmup:]
    return {"side": "authors", "stage": stage, "step_s": statistics.median(times), "raw_s": times,
            "cpu_s": statistics.median(cpu), "raw_cpu_s": cpu,
            "precision": "fp32", "torchvision_meta_skipped": shim, "device": device.type}


# ------------------------------------------------------------------ our side (child process)
def _ours_case(store: str, stage: str, steps: int, warmup: int) -> dict:
    import logging

    import torch

    from sparta.config import load_config
    from sparta.data.store import PreparedStore
    from sparta.runs import Run
    from sparta.seeding import generator
    from sparta.training import Trainer

    logging.disable(logging.WARNING)  # the sampler's short-split notice
    method = "autoencoder" if stage == "autoencoder" else "sparta"
    cfg = load_config("paper", [f"data.store={store}", f"train.batch_size={BATCH}"], method=method)
    prepared = PreparedStore.open(store)
    trainer = Trainer(Run.create(cfg, Path(tempfile.mkdtemp()) / "run"), prepared, progress=False)
    stage_ = next(s for s in trainer.stages if s.name == stage)
    opt = torch.optim.Adam(trainer.step.trainable(stage_), lr=stage_.lr)
    trainer.step.wrap(stage_)
    trainer.step.set_mode(stage_, True)
    batch = next(iter(trainer.loaders["train"]))
    gen = generator(0)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    times, cpu = [], []
    for i in range(warmup + steps):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        terms = trainer.step.terms(batch, stage_, 0.5, gen)
        opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        opt.step()
        _ = {k: float(v.detach()) for k, v in terms.items()}  # the trainer's per-step bookkeeping
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"side": "ours", "stage": stage, "step_s": statistics.median(times), "raw_s": times,
            "cpu_s": statistics.median(cpu), "raw_cpu_s": cpu,
            "precision": trainer.step.precision, "channels_last": trainer.step.channels_last,
            "device": trainer.device.type, "encoder_input": list(trainer.step.augmenter.input_hw)}


# ------------------------------------------------------------------ driver
def _child(args: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return json.loads(lines[-1])


def _machine() -> dict:
    import torch

    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _prepare_store(path: Path) -> str:
    import logging

    from sparta.config import DataConfig
    from sparta.data import prepare_from_config

    logging.disable(logging.WARNING)
    prepare_from_config(DataConfig(years=3, store=str(path)), path, progress=False)
    return str(path)


def run(authors: str, stages: list[str], steps: int, warmup: int, authors_site: str | None,
        out: str | None) -> list[dict]:
    missing = [f for f in {AUTHORS_FOLDER[s] for s in stages} if not (Path(authors) / f).is_dir()]
    if missing:
        raise SystemExit(f"--authors {authors}: no {', '.join(missing)} folder; pass a checkout of the authors' "
                         "repository (github.com/nathanwbailey/SPARTA)")
    env = dict(os.environ)
    if authors_site:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [authors_site, env.get("PYTHONPATH")]))
    load_start = os.getloadavg()
    store = _prepare_store(Path(tempfile.mkdtemp()) / "store")
    rows = []
    for stage in stages:
        theirs = _child(["--_case", "authors", "--authors", authors, "--stage", stage,
                         "--steps", str(steps), "--warmup", str(warmup)], env)
        ours = _child(["--_case", "ours", "--store", store, "--stage", stage,
                       "--steps", str(steps), "--warmup", str(warmup)])
        rows.append({"stage": stage, "authors": theirs, "ours": ours})
        _print_row(rows[-1])
    load_end = os.getloadavg()
    machine = _machine()
    print(f"\n{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
          f"CUDA {machine['cuda'] or 'none'}; load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "vs_authors.json").write_text(json.dumps(
            {"machine": machine, "load_start": load_start, "load_end": load_end, "steps": steps,
             "warmup": warmup, "rows": rows}, indent=1))
    return rows


HEADER = ("| stage | authors s/step | ours s/step | speed-up | authors CPU s/step | ours CPU s/step | speed-up (CPU) "
          "| ours: precision, encoder input |\n|---|---|---|---|---|---|---|---|")


def _print_row(row: dict) -> None:
    if not getattr(_print_row, "started", False):
        print(HEADER)
        _print_row.started = True
    a, o = row["authors"], row["ours"]
    if "error" in a or "error" in o:
        def cell(r: dict) -> str:
            return f"failed: {r['error']}" if "error" in r else f"{r['step_s']:.2f}"
        print(f"| {row['stage']} | {cell(a)} | {cell(o)} | - | - | - | - | - |", flush=True)
        return
    hw = "x".join(str(v) for v in reversed(o["encoder_input"]))
    print(f"| {row['stage']} | {a['step_s']:.2f} | {o['step_s']:.2f} | {a['step_s'] / o['step_s']:.2f}x | "
          f"{a['cpu_s']:.2f} | {o['cpu_s']:.2f} | {a['cpu_s'] / o['cpu_s']:.2f}x | {o['precision']}, {hw} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--authors", help="checkout of the authors' repository (github.com/nathanwbailey/SPARTA)")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--authors-site", help="extra import path for the authors' processes (torchvision, "
                                          "pytorch-metric-learning)")
    p.add_argument("--out", help="folder for vs_authors.json")
    p.add_argument("--_case", choices=["authors", "ours"], help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--stage", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._case == "authors":
        print(json.dumps(_authors_case(args.authors, args.stage, args.steps, args.warmup)))
    elif args._case == "ours":
        print(json.dumps(_ours_case(args.store, args.stage, args.steps, args.warmup)))
    else:
        if not args.authors:
            p.error("--authors PATH is required (a checkout of the authors' repository)")
        stages = [s for s in args.stages.split(",") if s]
        unknown = set(stages) - set(STAGES)
        if unknown:
            p.error(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
        run(args.authors, stages, args.steps, args.warmup, args.authors_site, args.out)


if __name__ == "__main__":
    main()
