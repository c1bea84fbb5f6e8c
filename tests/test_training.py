"""The trainer: every stage runs, losses are finite, resume reproduces an uninterrupted run exactly."""

import csv

import numpy as np
import pytest
import torch

from sparta.augment import Augmenter
from sparta.checkpoint import CheckpointError, load_checkpoint
from sparta.config import ConfigError, load_config
from sparta.data import open_or_prepare
from sparta.runs import Run, RunError
from sparta.models.build import build_model, load_trained
from sparta.training import Record, Trainer, TrainingError, choose_precision, fast_path, plan_stages, train_run


def _config(store, *overrides, method="sparta"):
    return load_config("micro", [f"data.store={store.path}", *overrides], method=method)


def _weights(path):
    return load_checkpoint(path)["model"]


def test_stage_plans():
    cfg = load_config("paper")
    assert [s.name for s in plan_stages(cfg)] == ["pretrain", "blend", "decoder"]
    assert [s.epochs for s in plan_stages(cfg)] == [100, 250, 200]
    ae = plan_stages(load_config("paper", method="autoencoder"))
    assert [(s.name, s.epochs, s.lr) for s in ae] == [("autoencoder", 180, 1e-3)]


@pytest.mark.parametrize("method", ["sparta", "autoencoder"])
def test_training_writes_a_complete_run(tmp_path, micro_store, method):
    run = Run.create(_config(micro_store, method=method), tmp_path / "run")
    Trainer(run, micro_store, progress=False).fit()
    assert run.is_complete and run.best.is_file() and run.last.is_file()
    stages = [s.name for s in plan_stages(run.config)]
    assert all((run.figures / f"loss_{s}.png").is_file() for s in stages)
    rows = (run.path / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + len(stages) and rows[0].startswith("stage,epoch,lr,alpha")
    model, cfg, state = load_trained(run.best)
    assert cfg == run.config and state["channels"] == ["t2m", "z850", "u850", "v850", "q850"]
    h = model.encode(torch.zeros(2, 5, 72, 144))
    assert model.decode(h).shape == (2, 5, 32, 64)


def _interrupt_after_saves(run: Run, store, monkeypatch, saves: int) -> None:
    """Train ``run`` until its ``saves``-th checkpoint is written, then stop it as Ctrl-C would."""
    original = Record.save
    calls = []

    def save_then_die(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(Record, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        Trainer(run, store, progress=False).fit()
    monkeypatch.setattr(Record, "save", original)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, micro_store, monkeypatch):
    overrides = ["train.epochs_pretrain=2", "train.epochs_blend=2"]
    full = Run.create(_config(micro_store, *overrides), tmp_path / "full")
    Trainer(full, micro_store, progress=False).fit()

    broken = Run.create(_config(micro_store, *overrides), tmp_path / "broken")
    _interrupt_after_saves(broken, micro_store, monkeypatch, 3)  # pretrain 1-2 and blend 1: mid stage 2
    assert load_checkpoint(broken.last)["stage"] == "blend" and not broken.is_complete

    Trainer(Run.open(broken.path), micro_store, progress=False, resume=True).fit()
    expected, resumed = _weights(full.best), _weights(broken.best)
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, micro_store):
    run = Run.create(_config(micro_store), tmp_path / "run")
    Trainer(run, micro_store, progress=False).fit()
    other = Run.create(_config(micro_store, "model.width=8"), tmp_path / "other")
    other.checkpoints.mkdir()
    run.last.replace(other.last)
    with pytest.raises(CheckpointError, match="another model/config"):
        Trainer(other, micro_store, progress=False, resume=True).fit()


def test_existing_run_directory_is_never_overwritten_silently(tmp_path, micro_store):
    Run.create(_config(micro_store), tmp_path / "run")
    with pytest.raises(RunError, match="already exists"):
        Run.create(_config(micro_store), tmp_path / "run")


def test_nonfinite_loss_stops_with_stage_epoch_and_term(tmp_path, micro_store):
    run = Run.create(_config(micro_store, "train.lr=1e30", "train.autoencoder_lr=1e30"), tmp_path / "run")
    with pytest.raises(TrainingError, match=r"non-finite loss in stage \w+, epoch \d+: term\(s\)"):
        Trainer(run, micro_store, progress=False).fit()


@pytest.mark.parametrize("fusion", ["attention", "gnn"])
def test_late_fusion_is_a_config_switch(tmp_path, micro_store, fusion):
    run = Run.create(_config(micro_store, f"model.fusion={fusion}"), tmp_path / "run")
    Trainer(run, micro_store, progress=False).fit()
    model, _, _ = load_trained(run.best)
    assert type(model.fusion).__name__ == {"attention": "AttentionFusion", "gnn": "GraphFusion"}[fusion]
    assert (run.figures / "graph.png").is_file() == (fusion == "gnn")


def test_any_variables_levels_and_grid(tmp_path):
    variables = ("[2m_temperature,geopotential@500,geopotential@850,temperature@850,u_component_of_wind@850,"
                 "v_component_of_wind@850,specific_humidity@850]")
    cfg = load_config("micro", ["data.grid=128x64", f"data.variables={variables}", "data.years=2",
                                f"data.store={tmp_path / 'store'}", "model.fusion=gnn"])
    store = open_or_prepare(cfg.data, progress=False)
    assert store.channels == ["t2m", "z500", "z850", "t850", "u850", "v850", "q850"] and store.grid == "128x64"
    run = Run.create(cfg, tmp_path / "run")
    Trainer(run, store, progress=False).fit()
    model, _, state = load_trained(run.best)
    assert state["channels"] == store.channels
    x = torch.as_tensor(store.normalise(np.asarray(store.fields[:2])))
    h = model.encode(Augmenter(cfg.augment, 64, 128).encoder_input(x))
    assert model.decode(h).shape == (2, 7, 64, 128)
    adjacency = model.fusion.adjacency
    assert adjacency[1, 2] and adjacency[2, 3] and adjacency[4, 5] and not adjacency[6, :6].any()


def test_fast_path_is_off_on_cpu_and_refuses_channels_last_there(tmp_path, micro_store):
    trainer = Trainer(Run.create(_config(micro_store), tmp_path / "run"), micro_store, progress=False)
    # auto: bf16 only where the CPU has it natively (tests/test_speed_parity.py); channels_last is for CUDA
    assert (trainer.step.precision, trainer.step.channels_last) == (choose_precision("auto", torch.device("cpu"))[0], False)
    cfg = _config(micro_store, "train.channels_last=true")
    with pytest.raises(TrainingError, match="channels_last=true needs a CUDA device"):
        fast_path(cfg, torch.device("cpu"), build_model(cfg, micro_store.layout))


def test_skill_is_logged_and_an_unskilled_decoder_is_flagged(tmp_path, micro_store, caplog):
    """One micro epoch cannot learn the weather: metrics.csv says so and the run ends with a warning."""
    run = Run.create(_config(micro_store, method="autoencoder"), tmp_path / "run")
    with caplog.at_level("WARNING", logger="sparta.training"):
        Trainer(run, micro_store, progress=False).fit()
    header, row = (line.split(",") for line in (run.path / "metrics.csv").read_text().splitlines()[:2])
    values = dict(zip(header, row))
    assert float(values["skill_rrmse_vs_climatology"]) > 1.0
    assert -1.0 <= float(values["skill_eddy_r_min"]) <= float(values["skill_eddy_r_mean"]) <= 1.0
    assert any("no better than climatology" in r.getMessage() for r in caplog.records)


EOF_START = ("model.linear_path=true", "model.linear_init=eof", "augment.mode=native", "model.norm=batch",
             "model.stem=cifar", "model.decoder_dropout=0", "train.lr=1e-3", "train.linear_lr_scale=0.01")


def test_a_run_started_from_eofs_beats_climatology_and_keeps_its_start(tmp_path, micro_store):
    """model.linear_init=eof starts from the EOF reconstruction; training at the scaled linear-path lr must not
    lose it. Measured here: 0.822x climatology at the start, 0.822 after 3 epochs at linear_lr_scale=0.01,
    0.911 at 1.0 (the quick autoencoder went from 0.38x to 0.82x in its first epoch at 1.0)."""
    cfg = _config(micro_store, *EOF_START, "train.epochs_autoencoder=3", "train.steps_per_epoch=5",
                  method="autoencoder")
    trainer = Trainer(Run.create(cfg, tmp_path / "run"), micro_store, progress=False)
    groups = trainer.step.trainable(plan_stages(cfg)[0])
    linear = {id(p) for p in trainer.step.model.linear_path_parameters()}
    assert [g.get("lr") for g in groups] == [None, 1e-3 * 0.01]
    assert {id(p) for p in groups[1]["params"]} == linear and len(linear) == 4  # two weights, two biases
    start = trainer.skill.measure(trainer.step)
    trainer.fit()
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    end = float(rows[-1]["skill_rrmse_vs_climatology"])
    assert start["skill_rrmse_vs_climatology"] < 1.0 and end < 1.0
    assert end <= start["skill_rrmse_vs_climatology"] * 1.02
    for name in micro_store.channels:  # the EOF start, per variable: hiding 70% of the input costs skill
        complete, hidden = (start[f"skill_{tag}{name}_rmse_vs_climatology"] for tag in ("", "hidden70_"))
        assert 0.0 < complete < hidden and -1.0 <= start[f"skill_hidden70_{name}_eddy_r"] <= 1.0
        assert float(rows[-1][f"skill_hidden70_{name}_rmse_vs_climatology"]) > 0.0


def test_a_run_started_from_eofs_never_ends_worse_than_its_start(tmp_path, micro_store, caplog):
    """The guard: the final stage's validation loss of the EOF start is the best to beat. An lr that wrecks every
    epoch (3, linear paths too) leaves best.pt the start itself; a sane one keeps a best no worse than it."""
    wreck = _config(micro_store, *EOF_START, "train.epochs_autoencoder=2", "train.steps_per_epoch=3", "train.lr=3",
                    "train.linear_lr_scale=1", method="autoencoder")
    trainer = Trainer(Run.create(wreck, tmp_path / "wreck"), micro_store, progress=False)
    start = {k: v.clone() for k, v in trainer.step.model.state_dict().items()}
    start_val = trainer.validate(plan_stages(wreck)[-1], 1.0)["total"]
    trainer.fit()
    rows = list(csv.DictReader((tmp_path / "wreck" / "metrics.csv").open()))
    assert min(float(r["val_total"]) for r in rows) > start_val  # every epoch was worse: the guard was needed
    best = load_checkpoint(trainer.run.best)
    assert best["stage"] == "start" and all(torch.equal(best["model"][k], start[k]) for k in start)
    assert load_checkpoint(trainer.run.last)["best_val"] == start_val
    assert any("best.pt is the EOF start" in r.getMessage() for r in caplog.records)

    sane = _config(micro_store, *EOF_START, "train.steps_per_epoch=3")  # SPARTA: pretrain, blend, decoder
    trainer = Trainer(Run.create(sane, tmp_path / "sane"), micro_store, progress=False)
    start_val = trainer.validate(plan_stages(sane)[-1], 1.0)["total"]
    trainer.fit()
    assert load_checkpoint(trainer.run.last)["best_val"] <= start_val


def test_a_resumed_eof_start_run_loads_its_weights_without_refitting_the_eofs(tmp_path, micro_store, monkeypatch):
    cfg = _config(micro_store, *EOF_START, "train.epochs_autoencoder=2", "train.steps_per_epoch=3",
                  method="autoencoder")
    full = Run.create(cfg, tmp_path / "full")
    Trainer(full, micro_store, progress=False).fit()
    broken = Run.create(cfg, tmp_path / "broken")
    _interrupt_after_saves(broken, micro_store, monkeypatch, 1)  # after epoch 1

    def no_refit(*args, **kwargs):
        raise AssertionError("a resumed run refitted the EOFs")

    monkeypatch.setattr("sparta.training.fit_train_eofs", no_refit)
    train_run(Run.open(broken.path), micro_store, progress=False, resume=True)
    expected, resumed = _weights(full.best), _weights(broken.best)
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)


def test_eof_start_needs_its_settings():
    with pytest.raises(ConfigError, match="model.linear_path=true.*augment.mode=native"):
        load_config("micro", ["model.linear_init=eof"])


def test_skill_reference_is_the_monthly_climatology_of_the_train_split(tiny_store):
    from sparta.training import skill_reference

    days, climatology = skill_reference(tiny_store, max_days=4)
    va, vb = tiny_store.split_range("val")
    assert days.shape == (4, *tiny_store.read(slice(0, 1)).shape[1:])
    torch.testing.assert_close(days[0], torch.from_numpy(np.array(tiny_store.read(slice(va, va + 1))[0])))
    # the tiny store's value is day index + a fixed wave: a month's climatology is its mean day index
    month = tiny_store.times.astype("datetime64[M]").astype(int) % 12
    ta, tb = tiny_store.split_range("train")
    same = np.flatnonzero(month[ta:tb] == month[va]) + ta
    expected = np.asarray(tiny_store.read(same), dtype=np.float64).mean(0)
    torch.testing.assert_close(climatology[0], torch.from_numpy(expected).float())


def test_mean_field_starts_the_decoder_at_the_train_mean(tmp_path, micro_store):
    """model.mean_field: the decoder's per-point bias is the normalised train-split mean, so with the network's
    output layer at zero the autoencoder decodes every day as that mean."""
    cfg = _config(micro_store, "model.mean_field=true", method="autoencoder")
    trainer = Trainer(Run.create(cfg, tmp_path / "run"), micro_store, progress=False)
    decoder = trainer.step.model.decoder
    start, stop = micro_store.split_range("train")
    mean = micro_store.normalise(micro_store.read(slice(start, stop))).mean(axis=0)
    torch.testing.assert_close(decoder.mean_field.detach(), torch.as_tensor(mean, dtype=torch.float32))
    with torch.no_grad():
        decoder.head.weight.zero_(), decoder.head.bias.zero_()
        out = trainer.step.model.decode(torch.randn(3, cfg.model.embed_dim))
    torch.testing.assert_close(out, decoder.mean_field.detach().expand_as(out))
    with pytest.raises(ConfigError, match="model.mean_field=true .* model.linear_init=eof"):
        _config(micro_store, "model.mean_field=true", "model.linear_path=true", "model.linear_init=eof",
                "augment.mode=native", method="autoencoder")


def test_area_weighted_loss_uses_the_store_latitudes(tmp_path, micro_store):
    from sparta.metrics import lat_weights

    plain = Trainer(Run.create(_config(micro_store, method="autoencoder"), tmp_path / "a"), micro_store, progress=False)
    cfg = _config(micro_store, "loss.area_weighted=true", method="autoencoder")
    weighted = Trainer(Run.create(cfg, tmp_path / "b"), micro_store, progress=False)
    assert plain.step.loss_weights is None
    expected = lat_weights(torch.as_tensor(micro_store.parts[0].lat)).float()
    torch.testing.assert_close(weighted.step.loss_weights, expected)
    assert float(expected.min()) < 0.1 < 1.5 < float(expected.max())  # poles against the equator on 64x32
