"""Multi-process training end to end, at every precision the trainer can pick.

``torchrun`` starts 2 CPU processes (gloo) running ``sparta train``, the path a user takes
(``dist.init_from_env``, rank 0 creating the run, each stage wrapped in DDP, BatchNorm replaced by
:class:`sparta.dist.GlobalBatchNorm`), and the result is compared with one process trained on the
combined batch (``train.batch_size`` doubled), for ``train.precision`` fp32, bf16, fp16 and auto
(bf16 on a CPU with AVX512-BF16 or AMX, such as this project's; fp32 elsewhere).

Two processes see exactly the combined batch of one process: rank r's batch i is the r-th half of
the single process's batch i (tests/test_ddp.py checks the sampler), negatives are gathered and
gradients averaged. Only the random augmentations would differ, since each process draws its own:
here they are replaced by a fixed mask without crop (:class:`FixedAugmenter`), and decoder dropout
is off. What remains is rounding: summation order, the batch sizes the kernels see, and bf16/fp16
activations. Three things are compared after the 3 stages of one step each:

* the per-epoch total losses: the first stage's is the forward pass on identical weights, where the
  global batch norm over 2 processes must equal the 1-process BatchNorm;
* the BatchNorm running statistics, which GlobalBatchNorm accumulates over the global batch;
* every float tensor of the model (parameters and running statistics);

the latter two as ||2 processes - 1 process|| / ||1 process - initial weights||.

Measured (torch 2.13 CPU, AVX512-BF16/AMX), correct against broken: the broken run is 2 processes
with per-process BatchNorm (``convert_batchnorm`` skipped), the mistake GlobalBatchNorm exists for.

=========  ===================  ===================  ===================
precision  losses               running statistics   all tensors
=========  ===================  ===================  ===================
fp32       8.9e-7 / 7.1e-2      4.3e-5 / 1.7e-2      6.7e-4 / 3.1e-2
bf16       7.9e-3 / 1.1e-1      1.3e-3 / 1.6e-2      1.8e-2 / 3.1e-2
fp16       8.6e-4               1.1e-4               1.2e-4
=========  ===================  ===================  ===================

bf16 is loose because the micro model at its initial weights is chaotic in bf16: its embeddings
vary by only ~0.02 across samples, so bf16 rounding of them is a large part of what the
projector's BatchNorm normalises. In one process, scaling the inputs by 1 + 1e-6 moves the
first-step NT-Xent loss by 0.8% in bf16 (3e-7 in fp32), and Adam's normalised steps turn the
rounding noise of the encoder's gradients into steps as large as the signal's: its convolution
weights end as far from the 1-process bf16 run's as from the fp32 run's. The loss and the running
statistics still tell the correct run from the broken one by 14x and 12x; all tensors only by
1.7x. In fp16 the encoder does not move in these three steps (the gradient scaler skips steps whose
scaled gradients overflow, starting at 2**16): its figures measure the decoder and the statistics.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import sparta.training
from sparta.augment import Augmenter
from sparta.checkpoint import load_checkpoint
from sparta.cli import app
from sparta.models.build import build_model
from sparta.runs import Run
from sparta.training import choose_precision

pytestmark = pytest.mark.slow

PRECISIONS = ["fp32", "bf16", "fp16", "auto"]
PER_PROCESS = 6  # train.batch_size of each of the 2 processes: 2 (anchor, soft, hard) triplets
OVERRIDES = ["model.decoder_dropout=0", "train.steps_per_epoch=1"]
# Bounds: the values measured (module docstring) with a margin of 3x or more, but bf16's all-tensor bound
# (1.4x), which has to stay below the broken run's 3.1e-2.
LOSS_RTOL = {"fp32": 1e-5, "bf16": 2.5e-2, "fp16": 3e-3}
RUNNING_RTOL = {"fp32": 2e-4, "bf16": 5e-3, "fp16": 5e-4}
WEIGHTS_RTOL = {"fp32": 3e-3, "bf16": 2.5e-2, "fp16": 5e-4}

_WORKER = "from test_ddp_training import use_fixed_augmenter; use_fixed_augmenter(); from sparta.cli import app; app()"


class FixedAugmenter(Augmenter):
    """The trainer's augmenter without random draws: views are the encoder input (no crop), masked views and
    masked inputs hide every third point of a fixed pattern. A batch's views then do not depend on how it is
    split over processes."""

    def mask(self, x, generator, low, high, keep=None):
        n_lat, n_lon = self.native_hw
        pattern = (torch.arange(n_lat)[:, None] + torch.arange(n_lon)[None, :]) % 3 != 0
        return super().mask(x, generator, low, high, keep=pattern)

    def view(self, x, generator, masked, with_target=False):
        view, keep = self.mask(x, generator, 0.0, 0.0) if masked else (self.encoder_input(x), None)
        return (view, keep, x) if with_target else (view, keep)


def _fixed_augmenter(cfg, layout):
    return FixedAugmenter(cfg, layout[0].n_lat, layout[0].n_lon)


def use_fixed_augmenter() -> None:
    """In a torchrun worker: the trainer builds :class:`FixedAugmenter`."""
    sparta.training.build_augmenter = _fixed_augmenter


def _args(out: Path, store: Path, precision: str, batch_size: int) -> list[str]:
    return ["train", "--preset", "micro", "--out", str(out), "--no-progress", f"data.store={store}", *OVERRIDES,
            f"train.precision={precision}", f"train.batch_size={batch_size}"]


def _two_processes(out: Path, store: Path, precision: str) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--no-python", sys.executable, "-c", _WORKER, *_args(out, store, precision, PER_PROCESS)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, micro_store):
    """The 1-process run on the combined batch at a (resolved) precision, trained once per precision."""
    runs: dict[str, Path] = {}

    def run(precision: str) -> Path:
        if precision not in runs:
            out = tmp_path_factory.mktemp("one-process") / precision
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(sparta.training, "build_augmenter", _fixed_augmenter)
                result = CliRunner().invoke(app, _args(out, micro_store.path, precision, 2 * PER_PROCESS))
            assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
            runs[precision] = out
        return runs[precision]

    return run


def _losses(run: Path) -> list[dict[str, float]]:
    """The train and validation total loss of each epoch."""
    with open(run / "metrics.csv") as fh:
        return [{"train": float(row["train_total"]), "val": float(row["val_total"])} for row in csv.DictReader(fh)]


def _relative(a: dict, b: dict, start: dict, keys: list[str]) -> float:
    """||a - b|| / ||b - start|| over the tensors ``keys``."""
    diff = torch.cat([(a[k].double() - b[k].double()).flatten() for k in keys])
    moved = torch.cat([(b[k].double() - start[k].double()).flatten() for k in keys])
    assert float(moved.norm()) > 0.1  # the runs trained: the comparison is not vacuous
    return float(diff.norm() / moved.norm())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_two_processes_train_like_one_process_on_the_combined_batch(precision, one_process, micro_store, tmp_path):
    resolved = choose_precision(precision, torch.device("cpu"))[0]  # auto: bf16 with AVX512-BF16/AMX, else fp32
    two = _two_processes(tmp_path / "two", micro_store.path, precision)
    one = one_process(resolved)

    losses_two, losses_one = _losses(two), _losses(one)
    assert len(losses_two) == len(losses_one) == 3
    loss_diff = max(abs(a[k] - b[k]) / abs(b[k]) for a, b in zip(losses_two, losses_one) for k in b)

    cfg = Run.open(one).config
    torch.manual_seed(cfg.train.seed)  # as the trainer builds its model
    start = build_model(cfg, micro_store.layout).state_dict()
    w_two, w_one = (load_checkpoint(r / "checkpoints" / "best.pt")["model"] for r in (two, one))
    floats = [k for k in w_one if w_one[k].is_floating_point()]
    running = _relative(w_two, w_one, start, [k for k in floats if ".running_" in k])
    weights = _relative(w_two, w_one, start, floats)
    assert loss_diff <= LOSS_RTOL[resolved], f"losses differ by {loss_diff:.1e}"
    assert running <= RUNNING_RTOL[resolved], f"running statistics differ by {running:.1e}"
    assert weights <= WEIGHTS_RTOL[resolved], f"weights differ by {weights:.1e}"
