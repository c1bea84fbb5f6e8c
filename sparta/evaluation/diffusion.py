"""The diffusion task: complete-day latents generated from masked ones by the conditional DDPM, scored as
decoded fields (the mean of the draws, and the draws as an ensemble) and in latent space."""

from __future__ import annotations

import torch
from torch import Tensor

from sparta import grids, metrics
from sparta.augment import random_keep_mask
from sparta.downstream.diffusion import generate, train_diffusion
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
    """Conditional latent diffusion: complete-day latents generated from masked ones, scored as decoded fields
    (mean of the draws; beside the climatology of the same days) and in latent space."""
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
    mean_latents = gen.mean(1)
    mean_fields = ev.frozen.decode(mean_latents)
    truth, climatology = grids.take(ev.physical, idx), grids.take(ev.climatology, idx)
    members = grids.each(lambda f: f.view(len(idx), settings.diffusion_samples, *f.shape[1:]),
                         ev.frozen.decode(gen.reshape(-1, gen.shape[-1])))
    condition_fields = ev.frozen.decode(ev.h_masked[idx])  # the decoder's own answer to the same masked day
    out = {"conditions": len(idx), "samples": settings.diffusion_samples,
           **field_scores(mean_fields, truth, ev.train_range),
           "probabilistic": {"crps": per_channel(ev, metrics.crps(members, truth, ev.area_weights)),
                             "spread_skill": per_channel(ev, metrics.spread_skill(members, truth, ev.area_weights),
                                                            unitless=True)},
           "condition_decoded": {**field_scores(condition_fields, truth, ev.train_range),
                                 "per_variable": ev.variable_scores(ev.day_scores(condition_fields, idx))},
           **diffusion_latent_scores(gen, ev.inner_part("test", ev.h_clean), space.latents.to("cpu"),
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
    save_maps(ev, "diffusion_reconstruction", "reconstruction",
               f"{ev.label}: conditional diffusion, mean of {settings.diffusion_samples}",
               {"truth": [t[0] for t in grids.as_list(truth)], "sparse input": observed_parts,
                "generated mean": [g[0] for g in grids.as_list(mean_fields)]})
    return out


TASK = Task(TASK_SPECS["diffusion"], diffusion, lambda run, r, label: draw_maps(run, ("diffusion_",)))
