"""Run configs: dotted overrides, validation naming the key, JSON round trip."""

from pathlib import Path

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


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute", "a/b", ".hidden", "..", ".", "a b", "x\ny"])
def test_run_names_stay_inside_out(name):
    with pytest.raises(ValueError, match="name must be one directory name inside out"):
        RunConfig(name=name)


def test_good_run_names_and_the_seed_range():
    for name in ("x", "units3-seed0", "mosaic-N100", "gpt_1_layer", "lr=1e-3,b=2", "é"):
        assert parse_overrides([f"name={name}", "out=o"]).run_dir == Path("o") / name
    assert parse_overrides([f"seed={2**63 - 1}"]).seed == 2**63 - 1
    with pytest.raises(ValueError, match=r"seed must be in \[0, 9223372036854775807\], got 18446744073709551616"):
        parse_overrides([f"seed={2**64}"])


@pytest.mark.parametrize("overrides, match", [
    (["train.weight_decay=inf"], "weight_decay must be a finite number >= 0"),
    (["train.weight_decay=nan"], "weight_decay must be a finite number >= 0"),
    (["train.grad_clip=inf"], "grad_clip must be a finite number >= 0"),
    (["train.lr=nan"], "lr must be finite and > 0"),
    (["train.keep_checkpoints=0"], r"keep_checkpoints must be in \[1, inf\]"),
])
def test_non_finite_numbers_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        parse_overrides(overrides)


@pytest.mark.parametrize("text, match", [
    ('{"train": 3}', "train must be an object of train.FIELD values, got int"),
    ('[1, 2]', "a config must be a JSON object"),
    ('{"train": {"steps": {"a": 1}}}', "train.steps must be a number, a string, true/false, null or a list"),
    ('{"seed": [[1]]}', "seed must be a number"),
    ('{"train": {"steps": 2.5}}', "train.steps: expected an integer, got '2.5'"),
    ('{"bogus": 1}', "unknown key 'bogus'"),
    ('{"model": {"name": [1]}}', r"model.name must be the name of a registered model, got \[1\]"),
    ('{"train": {"lr": 1e999}}', "lr must be finite and > 0, got inf"),
    ('{"train": ', r"not valid JSON \(Expecting value at line 1, column 11\)"),
    ("[" * 100000, "nested too deeply"),
])
def test_a_bad_config_file_is_an_error_naming_the_file(tmp_path, text, match):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises((ValueError, TypeError), match=rf"{path}: .*{match}|{path}: {match}"):
        RunConfig.load(path)


def test_unreadable_config_files(tmp_path):
    with pytest.raises(ValueError, match=rf"{tmp_path / 'missing.json'}: no such file"):
        RunConfig.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="is a directory; give the config.json inside it"):
        RunConfig.load(tmp_path)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="is not a text"):
        RunConfig.load(tmp_path / "binary.json")


def test_dotted_flattens_nested_settings_to_override_names():
    from sandbox.config import dotted

    assert dotted({"train": {"lr": 1e-3, "betas": (0.9, 0.99)}, "seed": 0, "model": {"a": {"b": None}}, "empty": {}}) == {
        "train.lr": 1e-3, "train.betas": (0.9, 0.99), "seed": 0, "model.a.b": None}
    assert set(dotted(RunConfig().to_dict())) >= {"train.lr", "model.d", "task.name", "seed"}
