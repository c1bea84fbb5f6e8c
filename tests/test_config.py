import pytest

from sparta.config import Config, ConfigError, available_presets, load_config, parse_overrides


def test_presets_ship_with_the_package():
    assert {"quick", "paper", "micro"} <= set(available_presets())


def test_paper_preset_is_the_paper():
    cfg = load_config("paper")
    assert (cfg.train.epochs_pretrain, cfg.train.epochs_blend, cfg.train.epochs_decoder) == (100, 250, 200)
    assert cfg.train.lr == 1e-4 and cfg.train.autoencoder_lr == 1e-3 and cfg.train.epochs_autoencoder == 180
    assert cfg.train.batch_size == 126 and cfg.loss.temperature == 0.3 and cfg.loss.alpha_decay == 0.01
    assert cfg.model.embed_dim == 1000 and cfg.model.proj_dim == 128 and cfg.model.width == 64
    assert cfg.downstream.batch_size == 64 and cfg.downstream.lr == 1e-2
    assert (cfg.downstream.forecast_epochs, cfg.downstream.diffusion_epochs, cfg.downstream.classifier_epochs) == (
        100, 300, 100)
    assert cfg.data.grid == "64x32" and len(cfg.data.variables) == 5


def test_overrides_are_typed_and_nested():
    cfg = load_config("quick", ["train.epochs_pretrain=3", "model.fusion=gnn", "data.variables=[2m_temperature]",
                                "downstream.forecast_settings=[[5, 5]]"], method="autoencoder")
    assert cfg.train.epochs_pretrain == 3 and cfg.model.fusion == "gnn" and cfg.method == "autoencoder"
    assert cfg.data.variables == ["2m_temperature"] and cfg.downstream.forecast_settings == [(5, 5)]
    assert parse_overrides(["a.b.c=1.5"]) == {"a": {"b": {"c": 1.5}}}


@pytest.mark.parametrize(("override", "fragment"), [
    ("train.epochs=3", "unknown config key 'train.epochs'"),
    ("trian.lr=1", "unknown config key 'trian'"),
    ("model.fusion=late", "invalid value for 'model.fusion'"),
    ("train.lr=-1", "invalid value for 'train.lr'"),
    ("train.batch_size=10", "multiple of 3"),
    ("augment.mask_low=0.95", "mask_low"),
    ("data.grid=64by32", "invalid value for 'data.grid'"),
    ("noequals", "section.key=value"),
])
def test_bad_config_fails_naming_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_config("quick", [override])


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        load_config("fast")


def test_digest_tracks_model_settings_only():
    a, b = load_config("quick"), load_config("quick", ["downstream.lr=0.5"])
    assert a.digest() == b.digest()
    assert a.digest() != load_config("quick", ["model.width=8"]).digest()
    assert Config.model_validate(a.model_dump(mode="json")) == a  # the saved YAML/JSON round-trips
