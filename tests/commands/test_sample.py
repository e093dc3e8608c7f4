"""`sandbox sample`: seeded text from a trained run (mosaic and GPT), clear errors for bad arguments."""

import pytest

from sandbox.cli import main
from sandbox.config import RunConfig, TrainConfig
from sandbox.models import GPTConfig, MosaicConfig
from sandbox.train import train
from tasks.bigram import BigramConfig
from tasks.text import TextConfig

MODELS = {"mosaic": MosaicConfig(d=16, layers=1, units=2), "gpt": GPTConfig(d=16, layers=1, heads=2)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    made = {}
    for name, model in MODELS.items():
        config = RunConfig(task=TextConfig(seq_len=16), model=model, train=TrainConfig(steps=3, batch_size=2),
                           out=str(out), name=name)
        made[name] = train(config, progress=False).run_dir
    bigram = RunConfig(task=BigramConfig(seq_len=16), model=MODELS["gpt"], train=TrainConfig(steps=1, batch_size=2),
                       out=str(out), name="bigram")
    made["bigram"] = train(bigram, progress=False).run_dir
    return made


def sample(capsys, run_dir, *args):
    assert main(["sample", str(run_dir), *args]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", MODELS)
def test_prints_the_prompt_and_the_asked_number_of_characters_reproducibly(runs, capsys, name):
    args = ["--prompt", "ROMEO:", "--tokens", "40", "--temperature", "0.8", "--top-k", "20", "--seed", "0"]
    text = sample(capsys, runs[name], *args)
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 40 + 1  # print adds a newline
    assert sample(capsys, runs[name], *args) == text
    assert sample(capsys, runs[name], *args[:-1], "1") != text


@pytest.mark.parametrize("args, match", [
    (["--temperature", "0"], "--temperature must be a finite number > 0"),
    (["--temperature", "nan"], "--temperature must be a finite number > 0"),
    (["--tokens", "-1"], r"--tokens must be in \[0, 1000000\]"),
    (["--top-k", "0"], r"--top-k must be in \[1, inf\]"),
    (["--top-k", "1000"], r"--top-k must be in \[1, \d+\]"),
    (["--seed", "-2"], r"--seed must be in \[0, inf\]"),
    (["--prompt", ""], "--prompt must be a non-empty string"),
    (["--prompt", "ROMÉO"], "not in the corpus alphabet"),
])
def test_bad_arguments_are_one_line_errors(runs, capsys, args, match):
    import re

    assert main(["sample", str(runs["gpt"]), *args]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and "Traceback" not in err


def test_a_run_that_is_not_on_text_or_not_a_run_is_a_clear_error(runs, tmp_path, capsys):
    assert main(["sample", str(runs["bigram"])]) == 2
    assert "needs a run on a text task" in capsys.readouterr().err
    assert main(["sample", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
