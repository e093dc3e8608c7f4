"""Run configs: dotted overrides, validation naming the key, JSON round trip."""

import pytest

from sandbox.config import RunConfig, TrainConfig, parse_overrides
from sandbox.models import GPTConfig, MosaicConfig


def test_overrides_select_and_set_fields():
    config = parse_overrides(["task=three_moons", "model=mosaic", "model.d=64", "model.units=4",
                              "train.steps=500", "train.betas=0.8,0.95", "model.beta=none",
                              "model.leak=false", "seed=3", "task.noise=0.1"])
    assert isinstance(config.model, MosaicConfig) and config.model.d == 64 and config.model.units == 4
    assert config.model.leak is False and config.model.beta is None
    assert config.train.steps == 500 and config.train.betas == (0.8, 0.95)
    assert config.seed == 3 and config.task.noise == 0.1


def test_field_overrides_apply_to_the_selected_model_whatever_the_order():
    config = parse_overrides(["model.heads=2", "model=gpt"])
    assert isinstance(config.model, GPTConfig) and config.model.heads == 2


@pytest.mark.parametrize("overrides, match", [
    (["model.dd=3"], r"unknown key 'model.dd'; valid keys for model \(mosaic\) are: .*\bd, layers, units"),
    (["train.stepz=3"], "unknown key 'train.stepz'"),
    (["bogus=1"], "unknown key 'bogus'"),
    (["optim.lr=1"], "unknown key 'optim.lr'"),
    (["model=transformerx"], "unknown model 'transformerx'"),
    (["task=nope"], "unknown task 'nope'"),
    (["model.d=abc"], "model.d: expected an integer, got 'abc'"),
    (["model.leak=maybe"], "model.leak: expected true or false"),
    (["model.d=0"], r"model: d must be in \[1, inf\], got 0"),
    (["train.lr=-1"], "train: lr must be finite and > 0"),
    (["train.schedule=exp"], "train: schedule must be one of"),
    (["train.warmup_steps=20", "train.steps=10"], r"warmup_steps must be in \[0, 10\]"),
    (["seed=-1"], "seed must be in"),
    (["model.d"], "must look like key=value"),
])
def test_bad_overrides_are_rejected_naming_the_key(overrides, match):
    with pytest.raises((ValueError, TypeError), match=match):
        parse_overrides(overrides)


def test_json_round_trip(tmp_path):
    config = parse_overrides(["model=gpt", "model.d=32", "model.heads=4", "train.grad_clip=1.0", "name=x"])
    path = config.save(tmp_path / "config.json")
    again = RunConfig.load(path)
    assert again.to_dict() == config.to_dict()
    assert again.run_dir.name == "x"


def test_train_config_defaults_are_valid_and_checked():
    TrainConfig()
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="momentum must be in"):
        TrainConfig(momentum=1.0)
