"""All distributed (multi-process) helpers in one place.

Every helper degrades to the single-process identity when ``torch.distributed`` is unavailable
or its process group is not initialised: ``rank() == 0``, ``world_size() == 1``, ``gather(t) is t``
and ``barrier()`` does nothing. Losses never call raw collectives; they use :func:`gather`, whose
backward pass routes gradients back to the process that produced each row.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as torch_dist
from torch import nn


def _initialised() -> bool:
    """True when a process group is up (``torch.distributed`` available and initialised)."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group; 0 without a process group."""
    return torch_dist.get_rank() if _initialised() else 0


def world_size() -> int:
    """Number of processes in the default group; 1 without a process group."""
    return torch_dist.get_world_size() if _initialised() else 1


def is_main() -> bool:
    """True on rank 0 (and always in a single process): the process that logs and saves."""
    return rank() == 0


def gather(t: torch.Tensor) -> torch.Tensor:
    """Autograd-aware all-gather of ``t`` from every process, concatenated along dim 0.

    Shapes: ``t`` is ``(n, ...)`` on each of the ``W`` processes (``n`` must be equal on all of
    them); the result is ``(W * n, ...)`` with rank ``r``'s rows at ``[r * n, (r + 1) * n)``.
    Uses ``torch.distributed.nn.functional.all_gather``, whose backward sums the incoming gradients
    over processes and returns each process the slice for its own rows, so gradients reach the
    local encoder (a plain ``all_gather`` would cut the graph). Identity with one process.
    """
    if world_size() == 1:
        return t
    from torch.distributed.nn.functional import all_gather

    # torch 2.13 deprecates this public function in favour of the private
    # torch.distributed._functional_collectives; it still works on every torch we support (>= 2.3).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return torch.cat(all_gather(t), dim=0)


def barrier() -> None:
    """Wait until every process reaches this point; no-op without a process group."""
    if _initialised():
        torch_dist.barrier()


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes (WORLD_SIZE > 1); False for a single process.

    Backend nccl on CUDA, gloo on CPU; each process takes the GPU of its LOCAL_RANK.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _initialised():
        return _initialised()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch_dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def shutdown() -> None:
    if _initialised():
        torch_dist.destroy_process_group()


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats over processes (same keys everywhere); identity with one process."""
    if world_size() == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_collective_device())
    torch_dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(keys, t.tolist())}


def any_true(flag: bool) -> bool:
    """True if ``flag`` is True on any process, so every process takes the same branch."""
    if world_size() == 1:
        return flag
    t = torch.tensor([int(flag)], device=_collective_device())
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t.item())


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch_dist.get_backend() == "nccl" else \
        torch.device("cpu")


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose batch statistics are those of the batch gathered over all processes.

    Works on any device and backend (gloo included), unlike ``torch.nn.SyncBatchNorm`` (CUDA
    only), so multi-process training normalises exactly like one process with the combined
    batch. Two autograd-aware gathers: the global mean, then the mean squared deviation (no
    ``E[x^2] - E[x]^2`` cancellation). With one process or in eval mode it is plain BatchNorm;
    its state-dict keys are BatchNorm's, so checkpoints are interchangeable.

    Under bf16/fp16 autocast the input arrives in the low precision: the statistics, their
    reductions over processes and the normalisation are computed in (at least) float32, as
    BatchNorm's kernels accumulate, and the output is cast back to the input's dtype, as
    BatchNorm returns it.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected (N, C, ...) input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        n = x.numel() // x.shape[1] * world_size()
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # float64 models stay float64 (tests)
        mean = gather(xf.sum(dims)[None]).sum(0) / n
        centred = xf - mean.view(shape)
        var = gather(centred.pow(2).sum(dims)[None]).sum(0) / n  # biased, as BatchNorm normalises
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                # unbiased, as BatchNorm tracks
                self.running_var.lerp_((var * n / (n - 1)).to(self.running_var.dtype), self.momentum)
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm in ``module`` (in place) by :class:`GlobalBatchNorm` with the same state."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            ref = next(child.parameters(), child.running_mean)  # keep the device and dtype
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats).to(ref.device, ref.dtype)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module
