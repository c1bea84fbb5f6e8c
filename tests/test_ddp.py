"""Two CPU processes (gloo) against one process on the combined batch.

What is asserted (float64 throughout, so the tolerances only absorb summation-order rounding):

* losses (``nt_xent``, ``temporal_contrastive_loss``) with negatives gathered over 2 ranks, each
  holding half of a fixed batch: the mean over ranks of the per-rank loss equals the single-process
  loss (atol 1e-12, derived at LOSS_ATOL). Gradients w.r.t. the inputs: rank ``r``'s ``L_r.backward()`` leaves
  ``dL_r/dz_r + sum_{r' != r} dL_r'/dz_r`` on its own rows (the all-gather backward sums every
  rank's gradient for those rows), i.e. ``d(sum_r' L_r')/dz_r = W * dL/dz_r`` with
  ``L = mean_r L_r``. So the single-process input gradient is the concatenation of the per-rank
  gradients divided by ``W`` -- exactly the ``1/W`` that DDP applies when it averages parameter
  gradients (atol 1e-12);
* one full stage-1 step (``temporal_contrastive_loss + cycle_loss`` on three fixed views, one
  encoder pass over the concatenated views, as the trainer does) of a micro ``SpartaModel``
  wrapped in ``DistributedDataParallel``: parameters and buffers after one SGD and one Adam step
  equal the single-process step on the combined batch (loss rtol 5.5e-11 and gradients after DDP's
  averaging the same of the largest gradient, both derived at STEP_LOSS_RTOL; parameters after SGD lr
  times that, after Adam atol 1e-6, see ADAM_ATOL), provided no layer uses
  per-process batch statistics: (i) with GroupNorm in the stem and the projector's BatchNorm1d
  removed, and (ii) with every BatchNorm replaced by a batch norm whose statistics are gathered
  over the processes (``sparta.dist.GlobalBatchNorm``, running statistics included), also for late
  fusion, whose per-variable encoders run batched (each encoder's norm on its own channels);
* what is NOT equal: the stock model (BatchNorm2d stem + BatchNorm1d projector) normalises each
  rank's half batch with its own statistics, so loss and step differ from the single process;
  ``torch.nn.SyncBatchNorm`` cannot fix that on CPU: its forward raises on non-GPU tensors;
* the sampler gives ranks 0/1 disjoint anchors, and rank ``r``'s batch ``i`` is the
  single-process batch ``i * W + r``.
"""

from __future__ import annotations

import os
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from torch import nn

from sparta import dist
from sparta.config import SamplerConfig, load_config
from sparta.grids import Grid
from sparta.losses import cycle_loss, nt_xent, temporal_contrastive_loss
from sparta.models import SpartaModel
from sparta.sampling import ContrastiveBatchSampler

WORLD = 2
N_LOSS, D_LOSS = 8, 6  # global batch of the loss cases (4 per rank)
N_STEP = 4  # global anchors of the training-step cases (2 per rank), 3 views each
CHANNELS = ["2m_temperature", "geopotential@850", "u_component_of_wind@850", "v_component_of_wind@850",
            "specific_humidity@850"]
N_LAT, N_LON = 32, 64  # native grid; at 16x32 the last stage is 1x1 and per-channel GroupNorm makes h constant
TAU = 0.3
LRS = {"sgd": 0.05, "adam": 1e-2}
# Float64 rounding (unit u = 2**-53): a sum of n terms in another order differs by at most (n - 1) u sum|terms|.
# (a) the loss cases sum at most 3 x N_LOSS = 24 terms of size <= 1 / TAU before a log: < 24 u / TAU = 9e-15 of
# the loss (~2), so 1e-12 absolute is ~50x that bound.
LOSS_ATOL = 1e-12
# (b) a training step's loss comes out of a network whose largest reductions, the stem's batch statistics over
# the global batch's N x H x W values, are summed per rank and then across ranks (and by oneDNN in a blocking
# that depends on the batch and thread count): at most 3 N_STEP N_LAT N_LON u = 2.7e-12 relative per layer, over
# at most 20 normalised layers. Seen: 3.2e-13 relative (late_global_bn, 1 and 2 threads), 1.5e-12 absolute
# on a loss of 4.7, past a 1e-12 absolute bound that did not scale with the loss.
STEP_LOSS_RTOL = 20 * 3 * N_STEP * N_LAT * N_LON * 2.0**-53
# Backward runs through the same reductions, so early fusion's averaged gradients get the same relative bound,
# of the largest gradient (|g| ~ 60 here, so ~3.3e-9 absolute; seen: 3.5e-10 at 1 and 2 threads), and one SGD
# step moves a parameter by lr times that (seen: 1.7e-11).
GRAD_RTOL = STEP_LOSS_RTOL
# Adam's first step is lr * g / (|g| + eps): rounding noise (~1e-17) in gradients that are zero in exact
# arithmetic (a bias in front of a BatchNorm or of the cycle loss's second difference) becomes a step of
# up to lr * noise / eps, and near-zero gradients are amplified by up to lr / eps = 1e6. The averaged
# gradients themselves agree to GRAD_RTOL, and this bound is measured, not derived: seen 7.9e-8 (1 thread).
# Late fusion (gnn, five single-channel encoders run batched): gradients reach 3.4e3 (the stems: 4e2) and
# differ from the single process by at most 1.7e-9 of each parameter's largest gradient (seen: 5.1e-7
# absolute on a stem weight whose gradient reaches 4.0e2; that weight after the SGD step: 2.6e-8), so
# the bounds are relative to each parameter's largest gradient.
LATE_GRAD_RTOL = 1e-8
ADAM_ATOL = 1e-6
STEP_CASES = [("no_bn", "sgd"), ("no_bn", "adam"), ("global_bn", "sgd"), ("global_bn", "adam"), ("stock_bn", "sgd"),
              ("late_global_bn", "sgd")]  # late fusion (gnn): the per-variable encoders batched as one network


def _rows(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    n = x.shape[0] // world
    return x[rank * n:(rank + 1) * n]


def _loss_case(rank: int, world: int) -> dict[str, torch.Tensor]:
    """Per-rank loss values and input gradients of both losses on this rank's rows of a fixed batch."""
    g = torch.Generator().manual_seed(1)
    full = torch.randn(3, N_LOSS, D_LOSS, generator=g, dtype=torch.float64)
    out = {}
    a, b = (_rows(x, rank, world).clone().requires_grad_(True) for x in full[:2])
    loss = nt_xent(a, b, TAU)
    loss.backward()
    out.update(nt_xent=loss.detach(), nt_xent_grad_a=a.grad, nt_xent_grad_b=b.grad)
    zt, zm, zp = (_rows(x, rank, world).clone().requires_grad_(True) for x in full)
    loss = temporal_contrastive_loss(zt, zm, zp, TAU)
    loss.backward()
    out.update(temporal=loss.detach(), temporal_grad_t=zt.grad, temporal_grad_m=zm.grad, temporal_grad_p=zp.grad)
    return out


def _micro_model(variant: str) -> SpartaModel:
    cfg = load_config("micro").model
    if variant.startswith("late_"):
        cfg = cfg.model_copy(update={"fusion": "gnn"})
    if variant == "no_bn":
        cfg = cfg.model_copy(update={"stem_norm": "group"})
    torch.manual_seed(0)
    model = SpartaModel(cfg, [Grid(tuple(CHANNELS), N_LAT, N_LON)]).double()
    if variant == "no_bn":
        for i, layer in enumerate(model.projector):
            if isinstance(layer, nn.BatchNorm1d):
                model.projector[i] = nn.Identity()
    elif variant.endswith("global_bn"):
        dist.convert_batchnorm(model)
    model.decoder.requires_grad_(False)  # stage 1 trains the encoder and the projector only
    return model.train()


def _step_case(variant: str, optimiser: str, rank: int, world: int) -> dict[str, torch.Tensor]:
    """One stage-1 step on this rank's anchors of fixed views; returns the loss and the state after it."""
    model = _micro_model(variant)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=LRS[optimiser]) if optimiser == "sgd" else torch.optim.Adam(params, lr=LRS[optimiser])
    g = torch.Generator().manual_seed(2)
    views = torch.randn(3, N_STEP, len(CHANNELS), N_LAT, N_LON, generator=g, dtype=torch.float64)
    x_t, x_m, x_p = (_rows(v, rank, world) for v in views)
    n = x_t.shape[0]
    h = net(torch.cat([x_t, x_m, x_p]))  # encode through the DDP wrapper: one pass over the 3 views
    z = model.project(h)  # used outside DDP.forward: its gradients are still averaged (asserted below)
    loss = temporal_contrastive_loss(z[:n], z[n:2 * n], z[2 * n:], TAU) + cycle_loss(h[n:2 * n], h[:n], h[2 * n:])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    grads = {f"grad:{k}": p.grad.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    return {"loss": loss.detach(), **grads, **{k: v.detach().clone() for k, v in model.state_dict().items()}}


def _sync_batchnorm_error() -> str:
    bn = nn.SyncBatchNorm(3).train()
    try:
        bn(torch.randn(4, 3))
    except ValueError as err:
        return str(err)
    return ""


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                                  timeout=timedelta(seconds=120))
    try:
        results = {"loss": _loss_case(rank, world),
                   "steps": {f"{v}/{o}": _step_case(v, o, rank, world) for v, o in STEP_CASES},
                   "sync_bn_error": _sync_batchnorm_error()}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch_dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Run every case once on 2 gloo processes (one spawn for the whole module); per-rank results."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(WORLD, str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)  # .double(): the gnn's bool adjacency


# ------------------------------------------------------------------ (a) losses
@pytest.mark.parametrize("name, grads", [("nt_xent", ["nt_xent_grad_a", "nt_xent_grad_b"]),
                                         ("temporal", ["temporal_grad_t", "temporal_grad_m", "temporal_grad_p"])])
def test_gathered_loss_and_input_gradients_equal_single_process(ranks, name, grads):
    single = _loss_case(0, 1)
    per_rank = torch.stack([r["loss"][name] for r in ranks])
    torch.testing.assert_close(per_rank.mean(), single[name], rtol=0, atol=LOSS_ATOL)
    assert not torch.allclose(per_rank[0], per_rank[1])  # each rank's value is only its anchors' mean
    for key in grads:
        combined = torch.cat([r["loss"][key] for r in ranks]) / WORLD
        torch.testing.assert_close(combined, single[key], rtol=0, atol=LOSS_ATOL)


# ------------------------------------------------------------------ (b) one DDP training step
@pytest.mark.parametrize("variant, optimiser", [c for c in STEP_CASES if c[0] != "stock_bn"])
def test_ddp_step_equals_single_process_step(ranks, variant, optimiser):
    key = f"{variant}/{optimiser}"
    single = _step_case(variant, optimiser, 0, 1)
    losses = torch.stack([r["steps"][key]["loss"] for r in ranks])
    torch.testing.assert_close(losses.mean(), single["loss"], rtol=STEP_LOSS_RTOL, atol=0)
    start = _micro_model(variant).state_dict()
    moved = max(float((single[k] - start[k]).abs().max()) for k in start if single[k].is_floating_point())
    assert moved > 1e-3  # the step changed the parameters: the comparison below is not vacuous
    states = [{k: v for k, v in r["steps"][key].items() if k != "loss"} for r in ranks]
    assert _max_diff(states[0], states[1]) == 0.0  # DDP kept the ranks bit-identical
    assert states[0].keys() == {k for k in single if k != "loss"}
    grad_atol = GRAD_RTOL * max(float(v.abs().max()) for k, v in single.items() if k.startswith("grad:"))
    for k, v in states[0].items():  # averaged gradients; parameters and buffers (BN running stats) after the step
        atol = grad_atol if k.startswith("grad:") else (LRS["sgd"] * grad_atol if optimiser == "sgd" else ADAM_ATOL)
        if variant.startswith("late_") and k.startswith("grad:"):
            atol = max(grad_atol, LATE_GRAD_RTOL * float(single[k].abs().max()))
        elif variant.startswith("late_") and f"grad:{k}" in single:  # an SGD step moves it by lr x its gradient
            atol = max(atol, LRS[optimiser] * LATE_GRAD_RTOL * float(single[f"grad:{k}"].abs().max()))
        diff = float((v.double() - single[k].double()).abs().max())
        assert diff <= atol, f"{key}: {k} differs by {diff:.2e} > {atol:.0e}"


def test_stock_batchnorm_is_not_equal_under_ddp(ranks):
    """Per-rank BatchNorm statistics: the 2-process step is NOT the single-process step."""
    single = _step_case("stock_bn", "sgd", 0, 1)
    losses = torch.stack([r["steps"]["stock_bn/sgd"]["loss"] for r in ranks])
    assert abs(float(losses.mean() - single["loss"])) > 1e-6
    state = {k: v for k, v in ranks[0]["steps"]["stock_bn/sgd"].items() if k != "loss" and not k.startswith("grad:")}
    assert _max_diff(state, {k: single[k] for k in state}) > 1e-6


def test_sync_batchnorm_refuses_cpu_tensors(ranks):
    """Why the trainer cannot simply use ``convert_sync_batchnorm`` with gloo on CPU."""
    assert "expected input tensor to be on GPU" in ranks[0]["sync_bn_error"]


def test_global_batchnorm_is_batchnorm_in_one_process():
    bn = nn.BatchNorm2d(3).double().train()
    glob = dist.convert_batchnorm(nn.Sequential(nn.BatchNorm2d(3).double()))[0].train()
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(glob(x), bn(x))
    torch.testing.assert_close(glob.running_var, bn.running_var)


# ------------------------------------------------------------------ (c) sampler partition
@pytest.mark.parametrize("hard_negatives, max_batches", [(True, None), (False, None), (True, 3)])
def test_sampler_partitions_anchors_across_ranks(hard_negatives, max_batches):
    cfg = SamplerConfig(soft_min=100)
    kwargs = dict(n_steps=400, batch_size=12, cfg=cfg, seed=7, hard_negatives=hard_negatives)
    step = 3 if hard_negatives else 1  # anchors sit at positions 0, 3, 6, ... of a triplet batch
    per_rank = []
    for r in range(WORLD):
        sampler = ContrastiveBatchSampler(**kwargs, max_batches=max_batches, rank=r, world_size=WORLD)
        sampler.set_epoch(4)
        per_rank.append(list(sampler))
        assert len(per_rank[-1]) == len(sampler)
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    anchors = [np.array([t for batch in batches for t, _ in batch[::step]]) for batches in per_rank]
    for a in anchors:
        assert len(np.unique(a)) == len(a)
        assert a.min() >= cfg.max_delta and a.max() < 400 - cfg.max_delta
    assert not set(anchors[0]) & set(anchors[1])
    single = ContrastiveBatchSampler(**kwargs, max_batches=None, rank=0, world_size=1)
    single.set_epoch(4)
    single_batches = list(single)
    for r, batches in enumerate(per_rank):
        for i, batch in enumerate(batches):
            assert batch == single_batches[i * WORLD + r]
