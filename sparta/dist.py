"""All distributed (multi-process) helpers in one place.

Every helper degrades to the single-process identity when ``torch.distributed`` is unavailable
or its process group is not initialised: ``rank() == 0``, ``world_size() == 1``, ``gather(t) is t``
and ``barrier()`` does nothing. Losses never call raw collectives; they use :func:`gather`, whose
backward pass routes gradients back to the process that produced each row.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as torch_dist


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
