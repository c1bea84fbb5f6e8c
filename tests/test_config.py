import math

import pytest

from sparta.config import Config, ConfigError, available_presets, load_config, parse_overrides
from sparta.grids import parse_grid
from sparta.variants import VARIANTS


def test_presets_ship_with_the_package():
    assert {"quick", "paper", "micro", "study"} <= set(available_presets())


def test_study_preset_is_the_paper_network_with_the_departures_that_learn():
    cfg = load_config("study")
    # no EOF start and no linear paths: the networks learn from random weights, as the paper's do
    assert not cfg.model.linear_path and cfg.model.linear_init == "random"
    # the departures of docs/results.md's learning curve, and nothing else of the architecture
    assert (cfg.model.stem, cfg.model.pool_hw, cfg.model.mean_field) == ("cifar", (4, 8), True)
    assert cfg.model.fusion == "early" and cfg.sampler.hard_negatives and cfg.loss.cycle
    # its own 30-year record, not the quick one, and the paper's forecast settings to T = 100
    assert cfg.data.source == "speedy" and cfg.data.years == 30 and cfg.data.store != load_config("quick").data.store
    ds = cfg.downstream
    assert ds.forecast_settings == [(30, 1), (5, 5), (5, 10)] and ds.rollout_steps == 100
    assert {25, 50, 75, 100} <= set(ds.lead_times) and ds.diffusion_samples == 20
    # every stage trains, the blend's alpha ends near where the quick preset's does (~0.09)
    t = cfg.train
    assert min(t.epochs_pretrain, t.epochs_blend, t.epochs_decoder, t.epochs_autoencoder) > 0
    assert 0.05 < math.exp(-cfg.loss.alpha_decay * (t.epochs_blend - 1)) < 0.15


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_of_the_study_is_a_valid_config(variant):
    v = VARIANTS[variant]
    cfg = load_config("study", v.overrides, method=v.method)
    assert cfg.method == v.method


def test_paper_preset_is_the_paper():
    cfg = load_config("paper")
    assert (cfg.train.epochs_pretrain, cfg.train.epochs_blend, cfg.train.epochs_decoder) == (100, 250, 200)
    assert cfg.train.lr == 1e-4 and cfg.train.autoencoder_lr == 1e-3 and cfg.train.epochs_autoencoder == 180
    assert cfg.train.batch_size == 126 and cfg.loss.temperature == 0.3 and cfg.loss.alpha_decay == 0.01
    assert cfg.model.embed_dim == 1000 and cfg.model.proj_dim == 128 and cfg.model.width == 64
    assert (cfg.downstream.forecast_epochs, cfg.downstream.diffusion_epochs, cfg.downstream.classifier_epochs) == (
        100, 300, 100)
    assert cfg.data.grid == "64x32" and len(cfg.data.variables) == 5


def test_paper_preset_downstream_is_section_6_1_3():
    ds = load_config("paper").downstream
    # "Our downstream models are all trained with a batch size of 64 and a learning rate of 1e-2": the
    # forecaster and classifier (lr) and the DDPM (diffusion_lr; the authors' code used 1e-3)
    assert ds.batch_size == 64 and ds.lr == 1e-2 and ds.diffusion_lr == 1e-2
    # "LB 30 + S 1, LB 5 + S 5, LB 5 + S 10", "predicting the next 100 timesteps", "three different seeds"
    assert ds.forecast_settings == [(30, 1), (5, 5), (5, 10)] and ds.rollout_steps == 100
    assert len(ds.forecast_seeds) == 3 and {25, 50, 75, 100} <= set(ds.lead_times)
    assert ds.forecast_horizon == 1  # trained on the next step (eq. 10)
    # diffusion: "generate 20 batches and take the mean", density sigma 20, realism k 5
    assert ds.diffusion_samples == 20 and ds.density_sigma == 20.0 and ds.realism_k == 5
    assert ds.max_conditions is None  # every test condition
    # the authors' code where section 6.1.3 is silent: 70% masked inputs, U(0.2, 0.9) for the classifier,
    # T = 1000 linear betas 1e-4..0.02
    assert ds.condition_mask == 0.7 and (ds.classify_mask_low, ds.classify_mask_high) == (0.2, 0.9)
    assert (ds.diffusion_steps, ds.beta_start, ds.beta_end) == (1000, 1e-4, 0.02)
    # the preset and the defaults agree but for diffusion_lr (default: the authors' 1e-3; 1e-2 stalled at quick size)
    assert ds.model_copy(update={"diffusion_lr": 1e-3}) == type(ds)() and type(ds)().diffusion_lr == 1e-3


def test_overrides_are_typed_and_nested():
    cfg = load_config("quick", ["train.epochs_pretrain=3", "model.fusion=gnn", "model.linear_init=random",
                                "data.variables=[2m_temperature]",
                                "downstream.forecast_settings=[[5, 5]]"], method="autoencoder")
    assert cfg.train.epochs_pretrain == 3 and cfg.model.fusion == "gnn" and cfg.method == "autoencoder"
    assert cfg.data.variables == ["2m_temperature"] and cfg.downstream.forecast_settings == [(5, 5)]
    assert parse_overrides(["a.b.c=1.5"]) == {"a": {"b": {"c": 1.5}}}


@pytest.mark.parametrize(("override", "fragment"), [
    ("train.epochs=3", "unknown config key 'train.epochs'"),
    ("trian.lr=1", "unknown config key 'trian'"),
    ("model.fusion=late", "invalid value for 'model.fusion': Input should be 'early', 'attention' or 'gnn'"),
    ("train.lr=-1", "invalid value for 'train.lr'"),
    ("train.batch_size=10", "multiple of 3"),
    ("augment.mask_low=0.95", "mask_low"),
    ("data.grid=64by32", "invalid value for 'data.grid': grid '64by32' is not of the form LONxLAT"),
    ("data.variable_grids={2m_temperature: 128by64}", "invalid value for 'data.variable_grids.2m_temperature': grid "
                                                       "'128by64' is not of the form LONxLAT"),
    ("model.pool=2by1", "invalid value for 'model.pool': grid '2by1' is not of the form LONxLAT"),
    ("noequals", "section.key=value"),
])
def test_bad_config_fails_naming_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_config("quick", [override])


def test_grid_sizes_come_from_grids_parse_grid():
    cfg = load_config("quick", ["data.grid=128x64", "model.pool=2x1"])
    assert (cfg.data.n_lon, cfg.data.n_lat) == parse_grid("128x64") == (128, 64)
    assert cfg.model.pool_hw == (1, 2)  # (lat, lon) cells
    assert load_config("quick").model.pool_hw == (1, 1)  # global pooling: one point per axis is a valid pool
    assert parse_grid("1x1", least=1) == (1, 1)
    with pytest.raises(ValueError, match="'1x32' is not of the form LONxLAT with at least 2 points each"):
        parse_grid("1x32")  # a grid of cells needs two per axis


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        load_config("fast")


def test_digest_tracks_model_settings_only():
    a, b = load_config("quick"), load_config("quick", ["downstream.lr=0.5"])
    assert a.digest() == b.digest()
    assert a.digest() != load_config("quick", ["model.width=8"]).digest()
    assert Config.model_validate(a.model_dump(mode="json")) == a  # the saved YAML/JSON round-trips


def test_validating_a_config_does_not_import_torch():
    """model.fusion is checked against config.FUSION_NAMES, not the registry in sparta.models.fusion (torch and
    torch-geometric, seconds to import), so `sparta config show/validate` stay fast."""
    import subprocess
    import sys

    code = ("import sys; from sparta.config import validate; validate({'model': {'fusion': 'gnn'}}); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_keys_added_later_leave_the_digest_of_runs_that_leave_them_off():
    """A run trained before model.mean_field, loss.area_weighted and data.gcm_runs existed keeps its digest (it
    still resumes and evaluates); setting any of them is another model."""
    import hashlib
    import json

    from sparta.config import DIGEST_IF_SET

    cfg = load_config("micro", method="autoencoder")
    payload = cfg.model_dump(mode="json")
    assert all(key in payload[section] for section, key in DIGEST_IF_SET)
    exclude = {"preset": True, "downstream": True, "data": {"source", "store"},
               "train": {"device", "num_workers", "precision", "channels_last", "compile"}}
    for section, key in DIGEST_IF_SET:
        exclude[section] = exclude.get(section, set()) | {key}
    before = cfg.model_dump(mode="json", exclude=exclude)
    assert cfg.digest() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert load_config("micro", ["loss.area_weighted=true"], method="autoencoder").digest() != cfg.digest()
    assert load_config("micro", ["model.mean_field=true"], method="autoencoder").digest() != cfg.digest()
    assert load_config("micro", ["data.gcm_runs=2"], method="autoencoder").digest() != cfg.digest()
