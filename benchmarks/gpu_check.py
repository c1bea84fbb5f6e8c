"""The GPU fast path, checked and timed on a CUDA machine in one command (not a test; CI never runs it).

    python benchmarks/gpu_check.py [--authors PATH/TO/SPARTA] [--authors-site DIR] [--steps 5]

Without CUDA it prints one line and exits with status 1. With CUDA it runs, on ``cuda:0``:

1. bf16 parity: micro-preset training (early fusion, gnn late fusion, EOF-started autoencoder) in fp32
   and in bf16; per-epoch train/val losses and reconstruction skill within the bounds
   tests/test_speed_parity.py uses on CPU (measured there).
2. compile parity: the encoder front eager vs ``torch.compile`` (early and late fusion, fp32):
   embeddings and every parameter's gradient.
3. channels_last parity: the model contiguous vs channels_last (fp32): embeddings, decoded fields
   and gradients, the check that failed on CPU (oneDNN's strided 1x1 weight gradients; channels_last
   is CUDA-only for that reason).
4. batched late fusion: the grouped per-variable encoders vs the encoders one after another.
5. timing: the paper-size stage-1 step (batch 126, 144x72) in fp32 eager, bf16, bf16 +
   channels_last + compile (the trainer's CUDA default), and the late-fusion step batched vs sequential;
   with ``--authors``, ``benchmarks/vs_authors.py`` beside the authors' code, all four stages.

Parity of 2-4 compares float32 runs that differ only in layout or compilation. cuDNN may pick other
convolution algorithms (and TF32) for each, so the bounds are relative to the largest value:
``max|a - b| <= REL * max|b|`` (a gradient's ``max|b|`` at least 1e-3 of the model's largest gradient)
with REL 1e-3 for outputs and 1e-2 for gradients: provisional, set from
TF32's 10-bit mantissa (~1e-3 per operation), not yet measured on a GPU; the table prints every
measured value beside its bound so the first run on a GPU can confirm or tighten them.
"""

from __future__ import annotations

import argparse
import copy
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

OUT_REL, GRAD_REL = 1e-3, 1e-2  # provisional (module docstring)
TRAIN_REL, VAL_REL, SKILL_REL = 0.05, 0.005, 0.002  # tests/test_speed_parity.py, measured on CPU
EOF_START = ("model.linear_path=true", "model.linear_init=eof", "augment.mode=native", "model.norm=batch",
             "model.stem=cifar", "model.decoder_dropout=0", "train.lr=1e-3", "train.linear_lr_scale=0.01")
ROWS: list[tuple[str, str, str, str]] = []


def _row(check: str, ok: bool | None, measured: str, bound: str) -> None:
    status = "skip" if ok is None else ("ok" if ok else "FAIL")
    ROWS.append((check, status, measured, bound))
    print(f"  {check}: {status} ({measured}; bound {bound})", flush=True)


def _rel(a, b) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-12))


# ------------------------------------------------------------------ 1. bf16 training parity
def check_bf16(store) -> None:
    from sparta.config import load_config
    from sparta.runs import Run
    from sparta.training import Trainer

    cases = {
        "early": (("train.epochs_pretrain=2", "train.epochs_blend=2", "train.epochs_decoder=1",
                   "train.steps_per_epoch=4", "train.val_steps=2"), "sparta"),
        "gnn": (("model.fusion=gnn", "train.epochs_pretrain=2", "train.epochs_blend=1", "train.epochs_decoder=1",
                 "train.steps_per_epoch=4", "train.val_steps=2"), "sparta"),
        "autoencoder-eof": ((*EOF_START, "train.epochs_autoencoder=3", "train.steps_per_epoch=5"), "autoencoder"),
    }
    for name, (overrides, method) in cases.items():
        curves = {}
        for precision in ("fp32", "bf16"):
            cfg = load_config("micro", [f"data.store={store.path}", "train.device=cuda", *overrides,
                                        f"train.precision={precision}", "train.compile=false",
                                        "train.channels_last=false"], method=method)
            path = Path(tempfile.mkdtemp()) / "run"
            Trainer(Run.create(cfg, path), store, progress=False).fit()
            curves[precision] = list(csv.DictReader((path / "metrics.csv").open()))
        worst = {"train_total": 0.0, "val_total": 0.0, "skill_rrmse_vs_climatology": 0.0}
        for a, b in zip(curves["fp32"], curves["bf16"]):
            for key in worst:
                if a.get(key):
                    worst[key] = max(worst[key], abs(float(b[key]) - float(a[key])) / abs(float(a[key])))
        ok = worst["train_total"] <= TRAIN_REL and worst["val_total"] <= VAL_REL and \
            worst["skill_rrmse_vs_climatology"] <= SKILL_REL
        _row(f"bf16 vs fp32 training, {name}", ok,
             f"train {worst['train_total']:.4f}, val {worst['val_total']:.4f}, "
             f"skill {worst['skill_rrmse_vs_climatology']:.4f}", f"{TRAIN_REL}, {VAL_REL}, {SKILL_REL}")


# ------------------------------------------------------------------ 2-4. layout / compile / batching parity
def _model(fusion: str, device):
    import torch

    from sparta.config import load_config
    from sparta.grids import Grid
    from sparta.models import SpartaModel

    # the quick preset's network (BatchNorm, linear paths, no dropout): the paper's one GroupNorm group per
    # channel on 3x5 last maps amplifies float32 rounding ~100x (batched vs sequential late fusion:
    # 1.3e-2 relative gradient differences in float32 on CPU, 1e-14 in float64), which would hide a real
    # layout error; tests/test_models.py checks the paper network's batching in float64
    cfg = load_config("quick", [f"model.fusion={fusion}", "model.linear_init=random"])
    torch.manual_seed(0)
    return SpartaModel(cfg.model, [Grid(("t2m", "z850", "u850", "v850", "q850"), 32, 64)]).to(device).train()


def _pass(model, x, memory_format=None):
    model.zero_grad(set_to_none=True)
    inp = x if memory_format is None else x.contiguous(memory_format=memory_format)
    h = model.encode(inp)
    fields = model.decode(h)
    (model.project(h).square().mean() + fields.square().mean()).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return h.detach(), fields.detach(), grads


def _compare(name: str, a, b) -> None:
    out = max(_rel(a[0], b[0]), _rel(a[1], b[1]))
    # each gradient relative to its own largest value, but at least 1e-3 of the largest gradient of the
    # model: a bias in front of a BatchNorm has a gradient of pure rounding noise (exactly 0 in theory)
    floor = 1e-3 * max(float(g.abs().max()) for g in b[2].values())
    def grad_rel(n):
        return float((a[2][n].float() - b[2][n].float()).abs().max()) / max(float(b[2][n].abs().max()), floor)
    grad_name, grad = max(((n, grad_rel(n)) for n in b[2]), key=lambda t: t[1])
    _row(name, out <= OUT_REL and grad <= GRAD_REL and set(a[2]) == set(b[2]),
         f"outputs {out:.2e}, worst gradient {grad:.2e} ({grad_name})", f"{OUT_REL:.0e} / {GRAD_REL:.0e}")


def check_layouts(device) -> None:
    import torch

    x = torch.randn(24, 5, 32, 64, device=device)
    x[x < -0.5] = 0.0
    for fusion in ("early", "gnn"):
        reference = _model(fusion, device)
        base = _pass(reference, x)
        last = copy.deepcopy(reference).to(memory_format=torch.channels_last)
        _compare(f"channels_last vs contiguous, {fusion}", _pass(last, x, torch.channels_last), base)
        compiled = copy.deepcopy(reference)
        compiled.fusion.compile()
        _compare(f"torch.compile vs eager, {fusion}", _pass(compiled, x), base)
    late = _model("attention", device)
    sequential = one_by_one(copy.deepcopy(late))
    _compare("batched vs sequential late fusion (attention)", _pass(late, x), _pass(sequential, x))


def one_by_one(model):
    """``model`` with its late-fusion encoders run one after another, the reference of the grouped forward."""
    import types

    import torch

    from sparta import grids

    def variable_embeddings(fusion, x, keep=None):
        return torch.stack([enc(c) for c, enc in zip(grids.split_channels(x), fusion.encoders)], dim=1)

    model.fusion.variable_embeddings = types.MethodType(variable_embeddings, model.fusion)
    return model


# ------------------------------------------------------------------ 5. timing
def time_steps(device, steps: int) -> list[tuple[str, float]]:
    import torch

    from sparta.augment import Augmenter
    from sparta.config import load_config
    from sparta.grids import Grid
    from sparta.losses import cycle_loss, temporal_contrastive_loss
    from sparta.models import SpartaModel
    from sparta.seeding import generator

    out = []
    for label, fusion, precision, fast, batched in (
            ("paper stage 1, fp32 eager", "early", "fp32", False, True),
            ("paper stage 1, bf16", "early", "bf16", False, True),
            ("paper stage 1, bf16 + channels_last + compile (default)", "early", "bf16", True, True),
            ("paper stage 1 late fusion (gnn), bf16, batched", "gnn", "bf16", False, True),
            ("paper stage 1 late fusion (gnn), bf16, sequential", "gnn", "bf16", False, False)):
        cfg = load_config("paper", [f"model.fusion={fusion}"])
        torch.manual_seed(0)
        model = SpartaModel(cfg.model, [Grid(("t2m", "z850", "u850", "v850", "q850"), 32, 64)]).to(device).train()
        model.decoder.requires_grad_(False)
        if not batched:
            one_by_one(model)
        fmt = torch.channels_last if fast else torch.contiguous_format
        if fast:
            model.to(memory_format=fmt)
            model.fusion.compile()
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        aug = Augmenter(cfg.augment, 32, 64)
        gen = generator(0)  # as the trainer draws its augmentation
        fields = [torch.randn(126, 5, 32, 64, device=device) for _ in range(3)]
        times = []
        for i in range(2 + steps):  # two warm-up steps (compilation)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            views = [aug.view(f, gen, masked=j > 0) for j, f in enumerate(fields)]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                h = model.encode(torch.cat(views).contiguous(memory_format=fmt))
                z = model.project(h).float()
                loss = temporal_contrastive_loss(z[:126], z[126:252], z[252:], 0.3) + \
                    cycle_loss(h[126:252].float(), h[:126].float(), h[252:].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        out.append((label, statistics.median(times)))
        print(f"  {label}: {out[-1][1]:.3f} s/step", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--authors", help="checkout of the authors' repository, for the side-by-side benchmark")
    p.add_argument("--authors-site", help="extra import path for the authors' processes (see vs_authors.py)")
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}); nothing checked", file=sys.stderr)
        return 1
    import logging

    from sparta.config import load_config
    from sparta.data import prepare_from_config

    logging.disable(logging.WARNING)
    device = torch.device("cuda")
    print(f"gpu_check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    store = prepare_from_config(load_config("micro").data, Path(tempfile.mkdtemp()) / "store", progress=False)
    for name, check in (("bf16 parity", lambda: check_bf16(store)), ("layout parity", lambda: check_layouts(device))):
        try:
            check()
        except Exception as err:  # one failing check must not hide the others
            _row(name, False, f"{type(err).__name__}: {err}"[:200], "-")
    timings = time_steps(device, args.steps)
    print("\n| check | result | measured | bound |\n|---|---|---|---|")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")
    print("\n| step | s/step |\n|---|---|")
    for label, seconds in timings:
        print(f"| {label} | {seconds:.3f} |")
    if args.authors:
        sys.path.insert(0, str(Path(__file__).parent))
        import vs_authors

        print()
        vs_authors.run(args.authors, list(vs_authors.STAGES), args.steps, 1, args.authors_site, None)
    return 0 if all(r[1] != "FAIL" for r in ROWS) else 2


if __name__ == "__main__":
    sys.exit(main())
