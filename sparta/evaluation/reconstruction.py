"""The reconstruction task: the inner-test days decoded from complete inputs and from each hidden fraction,
saved as predictions and scored beside the climatology of the same days."""

from __future__ import annotations

import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from sparta import grids, plots, predictions, scores
from sparta.data.store import DataError
from sparta.evaluation.state import (RECONSTRUCTION_MAP_HIDDEN, ROBUSTNESS_RATIOS, Evaluation, Task, display_units,
                                     draw_maps, save_maps)
from sparta.runs import Run
from sparta.tasks import TASK_SPECS


def reconstruction(ev: Evaluation) -> dict:
    """Decoded reconstructions of the inner-test days from complete inputs (the encoder's complete-day input) and
    from each hidden fraction of :data:`ROBUSTNESS_RATIOS` (the robustness task's masked latents), written as
    predictions (dims ``hidden, time, lat, lon``) and scored by :func:`score_reconstruction`."""
    a, b = ev.inner["test"]

    def decoded():
        for hidden in tqdm(ROBUSTNESS_RATIOS, desc="reconstruction", leave=False, disable=not ev.progress):
            fields = ev.frozen.decode(ev.h_clean[a:b] if hidden == 0 else ev.inner_test_latents(hidden))
            yield predictions.to_dataset(grids.each(lambda f: f[None], fields), ev.frozen.store, ("hidden", "time"),
                                         {"hidden": [hidden], "time": ev.times[a:b]})

    predictions.write_predictions(ev.run.evaluation, "reconstruction", decoded(), "hidden")
    return score_reconstruction(ev)


def score_reconstruction(ev: Evaluation) -> dict:
    """Every metric of the saved reconstructions (``evaluation/predictions/reconstruction.zarr``) at each hidden
    fraction, beside the climatology of the same days (``evaluation/scores/reconstruction.nc``, dims ``model``,
    ``hidden``, ``variable``); maps of one held-back day for the report."""
    pred = predictions.open_predictions(ev.run.evaluation, "reconstruction")
    if pred is None:
        raise DataError(f"{ev.run.path} has no saved reconstructions to score; evaluate it with --tasks reconstruction")
    days = predictions.day_indices(ev.times, pred["time"].values)
    if days is None:
        raise DataError(f"the saved reconstructions of {ev.run.path} are of days outside this store's test split; "
                        "evaluate the run again (without --rescore)")
    ref, store, hidden = ev.reference(days), ev.frozen.store, [float(h) for h in pred["hidden"].values]
    day = len(days) // 2  # one held-back day for the maps: the middle of the inner test
    per_hidden, map_of = [], {}
    for h in hidden:  # one fraction in memory at a time
        decoded = predictions.to_fields(pred.sel(hidden=h), store)
        per_hidden.append(scores.score(decoded, ref))
        map_of[h] = [p[day] for p in grids.as_list(decoded)]
    model = xr.concat(per_hidden, dim=pd.Index(hidden, name="hidden"))
    climatology = scores.score(ref.climatology, ref)
    table = xr.concat([model, climatology], dim=pd.Index([ev.label, "climatology"], name="model"))
    scores.write(table, ev.run.evaluation, "reconstruction")
    when = ev.times[int(days[day])]
    save_maps(ev, "reconstruction_test_day", "test day", f"{ev.label}: held-back test day {when}",
              {"truth": display_units(ev, [t[day] for t in grids.as_list(ref.truth)]),
               **{column: display_units(ev, map_of[h])
                  for column, h in (("complete", 0.0), ("hidden", RECONSTRUCTION_MAP_HIDDEN))}})
    return {"days": len(days), "hidden": hidden, **scores.pooled(model), "per_variable": scores.per_variable(model),
            "climatology": {**scores.pooled(climatology), "per_variable": scores.per_variable(climatology)},
            "map_day": str(when)}


def _draw_reconstruction(run: Run, results: dict, label: str) -> None:
    if "reconstruction" in results:
        r = results["reconstruction"]
        plots.plot_reconstruction_skill({label: r}, r["climatology"], results.get("units", {}),
                                        run.figures / "reconstruction_skill.png", f"{label}: decoded test days")
    draw_maps(run, ("reconstruction_",), results.get("units"))


TASK = Task(TASK_SPECS["reconstruction"], reconstruction, _draw_reconstruction, score_reconstruction)
