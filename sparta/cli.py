"""The ``sparta`` command line. Every command takes ``--preset`` and ``section.key=value`` overrides."""

from __future__ import annotations

import functools
import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from sparta.config import ConfigError, available_presets, load_config
from sparta.errors import UserError
from sparta.families import FAMILIES
from sparta.tasks import TASK_SPECS
from sparta.variants import VARIANTS


app = typer.Typer(help="SPARTA: contrastive embeddings of sparse gridded weather data.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Prepare datasets.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect and validate configurations.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(config_app, name="config")
console = Console(stderr=True)

Preset = Annotated[str, typer.Option(help=f"named preset: {', '.join(available_presets())}")]
Overrides = Annotated[Optional[list[str]], typer.Argument(help="config overrides, e.g. train.epochs_pretrain=3",
                                                          show_default=False)]


def _user_errors(fn):
    """Turn the library's user-facing errors (:class:`sparta.errors.UserError`) into one red line and exit status
    2 (no traceback); an interrupted run exits 128 + the signal. Any other exception is a bug and keeps its
    traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            signum = getattr(err, "signum", None)  # sparta.training.TrainingInterrupted
            if signum is not None:
                console.print(f"[yellow]interrupted:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
                raise typer.Exit(128 + signum) from None
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except OSError as err:  # an output (or input) path that cannot be written or read: say which, and the fix
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            from sparta.outputs import os_error_message

            console.print(f"[bold red]error:[/] {escape(os_error_message(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, show_time=False)])


@data_app.command("prepare")
@_user_errors
def data_prepare(
    source: Annotated[Optional[str], typer.Option(
        help="'speedy' (weather simulated by an atmosphere model), 'synthetic', or a WeatherBench2 zarr/netCDF "
        "path or URL (default: the preset's data.source)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="prepared store directory (default: data.store)")] = None,
    preset: Preset = "quick",
    overwrite: Annotated[bool, typer.Option(help="replace an existing prepared store")] = False,
    overrides: Overrides = None,
) -> None:
    """Write a prepared store (daily fields, statistics, splits, season labels) from a data source."""
    from sparta.data import prepare_from_config

    cfg = load_config(preset, [*(overrides or []), *([f"data.source={source}"] if source else [])])
    store = prepare_from_config(cfg.data, out or cfg.data.store, overwrite=overwrite)
    console.print(f"prepared store [bold]{store.path}[/]: {len(store.times)} days "
                  f"{store.times[0]}..{store.times[-1]}, channels {', '.join(store.channels)}, grid {store.grid}")


@app.command()
@_user_errors
def train(
    model: Annotated[str, typer.Option("--model", help=f"the model family: {', '.join(FAMILIES)}")] = "sparta",
    preset: Preset = "quick",
    out: Annotated[Optional[Path], typer.Option(help="run directory (default: runs/<model>-<preset>-<time>)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue this run directory from its last checkpoint")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out directory")] = False,
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
    overrides: Overrides = None,
) -> None:
    """Train SPARTA (three stages) or the autoencoder baseline, or fit the EOF/PCA baseline; resumable.

    Several processes: `torchrun --nproc-per-node N -m sparta.cli train --out RUN ...` (gloo on CPU,
    nccl on GPU); train.batch_size is per process and NT-Xent negatives are gathered over all of them.
    """
    from sparta import dist
    from sparta.data import open_or_prepare
    from sparta.locks import lock_directory
    from sparta.runs import Run
    from sparta.training import train_run

    if resume and overrides:
        raise ConfigError("--resume continues a run with its saved config; overrides are not allowed")
    cfg = None if resume else load_config(preset, overrides, method=model)
    distributed = dist.init_from_env()
    held = ExitStack()  # rank 0's lock on the run directory, from before it is created until training ends
    try:
        if distributed and not (resume or out):
            raise ConfigError("with several processes pass --out RUN, so that every process uses the same run")
        if dist.is_main():  # rank 0 creates the run and prepares the data; the others wait, then open them
            if resume:
                run = Run.open(resume)
                held.enter_context(lock_directory(run.path, "--resume"))
            else:
                run = Run.create(cfg, held.enter_context(lock_directory(out or Run.default_path(cfg))),
                                 overwrite=overwrite)
            console.print(f"run directory: [bold]{run.path}[/]")
            if resume and not run.has_checkpoints:
                console.print(f"run {run.path} has no checkpoint yet (it stopped before its first epoch "
                              "finished): training it from the start with its saved config")
            store = open_or_prepare(run.config.data, progress)
        dist.barrier()
        if not dist.is_main():
            run = Run.open(resume or out)
            store = open_or_prepare(run.config.data, progress=False)
        train_run(run, store, progress=progress, resume=resume is not None and run.has_checkpoints)
        main_process = dist.is_main()
    finally:
        held.close()
        dist.shutdown()
    if main_process:
        console.print(f"finished: [bold]{run.path}[/] (best model {run.best})")


@config_app.command("show")
@_user_errors
def config_show(preset: Preset = "quick", overrides: Overrides = None) -> None:
    """Print the fully resolved config (defaults <- preset <- overrides) as YAML."""
    sys.stdout.write(load_config(preset, overrides).to_yaml())


@config_app.command("validate")
@_user_errors
def config_validate(path: Path) -> None:
    """Check a config YAML file (e.g. a run's config.yaml); exit status 2 and the bad key if invalid."""
    from sparta.config import load_config_file

    load_config_file(path)
    console.print(f"{path}: valid")


@app.command()
@_user_errors
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a finished training run directory")],
    tasks: Annotated[Optional[str], typer.Option(
        help=f"comma-separated task names ({', '.join(TASK_SPECS)}); default: all")] = None,
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
    rescore: Annotated[bool, typer.Option(
        help="score the saved predictions again with every registered metric, training nothing (default tasks: "
             "those that keep predictions)")] = False,
) -> None:
    """Train and score the downstream models on the frozen encoder; write metrics, tables and figures."""
    from sparta.data import open_or_prepare
    from sparta.evaluation import Evaluation, rescorable, run_tasks
    from sparta.metrics import FIELD_METRICS
    from sparta.runs import Run
    from sparta.tables import paper_tables
    from sparta.variants import run_label

    from sparta.locks import lock_directory

    run = Run.open(run_dir)
    with lock_directory(run.path, "run directory"):  # metrics and figures go there
        store = open_or_prepare(run.config.data, progress, prepare=False)
        default = rescorable() if rescore else list(TASK_SPECS)
        results = run_tasks(Evaluation(run, store, progress=progress),
                            default if tasks is None else [t.strip() for t in tasks.split(",") if t.strip()], rescore)
        label = run_label(results["method"], results["fusion"])
        tables = "\n".join(t.markdown() for t in paper_tables({label: results}, tuple(FIELD_METRICS),
                                                               per_channel=True))
        (run.evaluation / "tables.md").write_text(tables)
    sys.stdout.write(tables)
    console.print(f"metrics: {run.evaluation / 'metrics.json'}; figures: {run.figures}")


@app.command(help="Train and evaluate the paper's grid (autoencoder, ablations, late fusion) and write the report."
             f"\n\nVariants: {', '.join(VARIANTS)}.\nRe-running continues where an interrupted run stopped.")
@_user_errors
def reproduce(
    preset: Preset = "quick",
    out: Annotated[Path, typer.Option(help="directory of the grid: one run per variant, and the report")] =
        Path("runs/reproduce"),
    only: Annotated[Optional[str], typer.Option(help="comma-separated variants (default: all)")] = None,
    progress: Annotated[bool, typer.Option(help="progress bars")] = True,
    jobs: Annotated[int, typer.Option(min=1, help="variants run at once, each in its own process with its share "
                                      "of the CPU threads (one progress bar over the variants then)")] = 1,
    overrides: Overrides = None,
) -> None:
    """Train and evaluate the grid of :data:`sparta.variants.VARIANTS` and write the report (help: above)."""
    from sparta.outputs import check_report_outputs
    from sparta.reproduce import reproduce as run_grid

    check_report_outputs(out)  # before hours of training: the report must be writable there
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    md, page = run_grid(preset, out, names, overrides, progress, jobs)
    _print_summary(out, md, page)


@app.command()
@_user_errors
def report(out: Annotated[Path, typer.Argument(help="a `sparta reproduce` output directory")]) -> None:
    """Rebuild report.md and report.html and every run's figures from saved results, without retraining."""
    from sparta.data.store import DataError
    from sparta.outputs import check_report_outputs
    from sparta.report import build_report

    if not out.is_dir():
        raise DataError(f"'{out}' is not a directory of `sparta reproduce` results; pass the --out of reproduce")
    check_report_outputs(out)
    md, page = build_report(out)
    _print_summary(out, md, page)


def _print_summary(out: Path, md: Path, page: Path) -> None:
    """The verdict and where the report and a decoded day are, on stdout: the screen a finished run leaves."""
    from sparta.report import summary

    typer.echo("\n".join([*summary(out, page), f"(the same as Markdown: {md})"]))


@app.command()
@_user_errors
def embed(
    run: Annotated[Path, typer.Option(help="a trained run directory")],
    data: Annotated[Path, typer.Option(help="prepared store to encode (from `sparta data prepare`)")],
    out: Annotated[Path, typer.Option(help="output file: .zarr or .nc")],
    mask: Annotated[Optional[Path], typer.Option(help="fixed observation mask: .nc/.zarr (lat, lon), or (channel, lat, lon) "
                                                      "with channel names, or .npy; True = observed")] = None,
    mask_ratio: Annotated[Optional[float], typer.Option(help="hide this fraction of points at random per day")] =
        None,
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    seed: Annotated[int, typer.Option(help="seed of the random mask")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out")] = False,
) -> None:
    """Encode every day of a prepared store (complete or masked) and write the embeddings (time, feature)."""
    from sparta.embed import embed as embed_store

    ds = embed_store(run, data, out, mask=mask, mask_ratio=mask_ratio, checkpoint=checkpoint, seed=seed,
                     overwrite=overwrite)
    console.print(f"embeddings: [bold]{out}[/] ({ds.sizes['time']} days x {ds.sizes['feature']} features, "
                  f"masking {ds.attrs['masking']})")


@app.command()
@_user_errors
def decode(
    run: Annotated[Path, typer.Option(help="the run directory that made the embeddings")],
    embeddings: Annotated[Path, typer.Option(help="a .zarr or .nc file written by `sparta embed`")],
    out: Annotated[Path, typer.Option(help="output file of decoded fields: .zarr or .nc")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out")] = False,
) -> None:
    """Decode embeddings to physical fields: one (time, lat, lon) variable per channel."""
    from sparta.embed import decode as decode_embeddings

    ds = decode_embeddings(run, embeddings, out, overwrite=overwrite)
    console.print(f"decoded fields: [bold]{out}[/] ({', '.join(map(str, ds.data_vars))}; {ds.sizes['time']} days)")


if __name__ == "__main__":  # `python -m sparta.cli`, as torchrun launches it
    app()
