"""The diffusion task: complete-day latents generated from masked ones by the conditional DDPM, scored as
decoded fields (the mean of the draws, and the draws as an ensemble) and in latent space. The draws are saved
as latents (dims ``time`` of the condition, ``draw``, ``latent``; decoded they would be ~40x larger) with what
their latent scores need, so they are scored again without the encoder or the denoiser."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from sparta import grids, metrics, predictions
from sparta.augment import random_keep_mask
from sparta.data.store import DataError
from sparta.downstream.diffusion import LatentStandardizer, generate, train_diffusion
from sparta.evaluation.state import Evaluation, Task, draw_maps, field_scores, per_channel, save_maps
from sparta.seeding import derive_seed, generator
from sparta.tasks import TASK_SPECS


def diffusion_latent_scores(gen: Tensor, ref: Tensor, standardizer, sigma: float, k: int) -> dict[str, float]:
    """Latent scores of (N conditions, S draws, D) generations against the reference latents ``ref`` (R, D).

    Each under the paper's definition and ours, on raw latents and on latents standardised with
    ``standardizer`` (``*_standardised``):

    - ``latent_std_all_samples`` (the paper's "Std dev"): std of every value of every draw of every
      condition (the authors' ``zh_samples.std()``); it mixes the spread between draws with the
      spread between conditions and latent dimensions.
    - ``latent_std_per_condition`` (ours): std across the S draws of one condition, averaged over
      conditions and dimensions: how uncertain the generation is for a given condition.
    - ``density_paper`` / ``realism_paper``: eq. 18 / 19 for the mean of the S draws of each
      condition (what the authors score); ``density_per_draw`` / ``realism_per_draw`` (ours): for
      every draw (a mean of draws sits nearer the data than any one draw).
    """
    flat, mean = gen.reshape(-1, gen.shape[-1]), gen.mean(1)
    out: dict[str, float] = {}
    for suffix, f in (("", lambda x: x), ("_standardised", standardizer)):
        g, r = f(gen), f(ref)
        out[f"latent_std_all_samples{suffix}"] = float(g.std())
        out[f"latent_std_per_condition{suffix}"] = float(g.std(1).mean())
        for name, points in (("paper", f(mean)), ("per_draw", f(flat))):
            out[f"density_{name}{suffix}"] = float(metrics.latent_density(points, r, sigma))
            out[f"realism_{name}{suffix}"] = float(metrics.realism_score(points, r, k))
    return out


def diffusion(ev: Evaluation) -> dict:
    """Conditional latent diffusion: complete-day latents generated from masked ones, written as predictions
    (``predictions/diffusion.zarr``) and scored by :func:`score_diffusion`."""
    settings = ev.downstream
    seed = derive_seed(ev.cfg.train.seed, "diffusion")
    model, schedule, space, _ = train_diffusion(
        ev.inner_part("train", ev.h_clean), ev.inner_part("train", ev.h_masked),
        ev.inner_part("val", ev.h_clean), ev.inner_part("val", ev.h_masked), settings, seed=seed, progress=ev.progress)
    a, b = ev.inner["test"]
    idx = torch.arange(a, b)
    if settings.max_conditions and len(idx) > settings.max_conditions:
        idx = idx[torch.linspace(0, len(idx) - 1, settings.max_conditions).round().long()]
    gen = generate(model, schedule, space, ev.h_masked[idx], settings.diffusion_samples, generator(seed),
                   batch_size=max(settings.batch_size, 256), progress=ev.progress).cpu()  # (N, S, D)
    standardizer = space.latents.to("cpu")
    saved = xr.Dataset(
        {"latent": (("time", "draw", "latent"), gen.numpy()),
         "condition": (("time", "latent"), ev.h_masked[idx].numpy()),
         "reference": (("reference_time", "latent"), ev.h_clean[a:b].numpy()),
         "standardizer_mean": ("latent", standardizer.mean.numpy()),
         "standardizer_std": ("latent", standardizer.std.numpy())},
        coords={"time": ev.times[idx.numpy()], "draw": np.arange(gen.shape[1]), "reference_time": ev.times[a:b]},
        attrs={"latent": "the draws of each condition's complete-day latent", "condition": "the latent of the "
               "masked day each draw is conditioned on", "reference": "the complete inner-test days' latents "
               "(latent density and realism)", "standardizer_*": "the downstream-train latents' mean and std"})
    predictions.write_predictions(ev.run.evaluation, "diffusion", [saved], "draw")
    return score_diffusion(ev)


def score_diffusion(ev: Evaluation) -> dict:
    """The saved draws decoded and scored (the mean of the draws as a field, the draws as an ensemble, beside the
    climatology of the same days and the decoder's own answer to the condition) and in latent space; a map of the
    first condition for the report."""
    saved = predictions.open_predictions(ev.run.evaluation, "diffusion")
    idx = None if saved is None else predictions.day_indices(ev.times, saved["time"].values)
    if idx is None:
        raise DataError(f"{ev.run.path} has no saved diffusion draws of this store's test days to score; "
                        "evaluate it with --tasks diffusion")
    settings = ev.downstream
    gen = torch.from_numpy(saved["latent"].values)
    samples = gen.shape[1]
    standardizer = LatentStandardizer(torch.from_numpy(saved["standardizer_mean"].values),
                                      torch.from_numpy(saved["standardizer_std"].values))
    mean_fields = ev.frozen.decode(gen.mean(1))
    truth, climatology = grids.take(ev.physical, idx), grids.take(ev.climatology, idx)
    members = grids.each(lambda f: f.view(len(idx), samples, *f.shape[1:]),
                         ev.frozen.decode(gen.reshape(-1, gen.shape[-1])))
    condition_fields = ev.frozen.decode(torch.from_numpy(saved["condition"].values))  # the decoder's own answer
    out = {"conditions": len(idx), "samples": samples,
           **field_scores(mean_fields, truth, ev.train_range),
           "probabilistic": {"crps": per_channel(ev, metrics.crps(members, truth, ev.area_weights)),
                             "spread_skill": per_channel(ev, metrics.spread_skill(members, truth, ev.area_weights),
                                                         unitless=True)},
           "condition_decoded": {**field_scores(condition_fields, truth, ev.train_range),
                                 "per_variable": ev.variable_scores(ev.day_scores(condition_fields, idx))},
           **diffusion_latent_scores(gen, torch.from_numpy(saved["reference"].values), standardizer,
                                     settings.density_sigma, settings.realism_k),
           "per_variable": ev.variable_scores(ev.day_scores(mean_fields, idx)),
           "climatology": {**field_scores(climatology, truth, ev.train_range),  # the same days' baseline
                           "per_variable": ev.variable_scores(ev.day_scores(climatology, idx)),
                           "crps": per_channel(ev, metrics.crps(grids.each(lambda f: f[:, None], climatology), truth,
                                                                ev.area_weights))}}
    gen_mask = generator(0)  # an illustration of the condition's sparsity: its ratio, drawn on each native grid
    observed_parts = []
    for part, true_g in zip(ev.frozen.store.parts, grids.as_list(truth)):
        observed = true_g[0].clone()
        keep = random_keep_mask(1, len(part.lat), len(part.lon), settings.condition_mask, settings.condition_mask,
                                gen_mask)
        observed[:, ~keep[0, 0]] = float("nan")
        observed_parts.append(observed)
    save_maps(ev, "diffusion_reconstruction", "reconstruction", f"{ev.label}: conditional diffusion, mean of {samples}",
              {"truth": [t[0] for t in grids.as_list(truth)], "sparse input": observed_parts,
               "generated mean": [g[0] for g in grids.as_list(mean_fields)]})
    return out


TASK = Task(TASK_SPECS["diffusion"], diffusion, lambda run, r, label: draw_maps(run, ("diffusion_",)), score_diffusion)
