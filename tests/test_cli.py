"""The `sandbox` entry point, the demo command, and one-line errors for every mistake a user can make."""

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.cli import COMMANDS, main
from sandbox.config import RunConfig


def test_demo_writes_figure_and_numbers(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n", "150", "--seed", "3"]) == 0
    for suffix in ("png", "pdf", "json"):
        assert (tmp_path / f"demo.{suffix}").stat().st_size > 0
    data = json.loads((tmp_path / "demo.json").read_text())
    fits = data["fits"]
    assert len(fits) == 5 and len(data["grid"]) == len(data["truth"]) == 400
    cv = next(v for k, v in fits.items() if "cross-validated" in k)
    fixed = [v["rmse"] for k, v in fits.items() if "cross-validated" not in k]
    # The cross-validated bandwidth is near the best of the fixed ones and far better than the widest.
    assert len(fixed) == 4 and cv["rmse"] <= 1.25 * min(fixed)
    assert cv["rmse"] < 0.5 * fits["beta=3"]["rmse"]
    assert "RMSE to truth" in capsys.readouterr().out


def test_bad_argument_is_a_one_line_error(capsys):
    assert main(["demo", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert "--n must be in [2, inf], got 1" in err and "Traceback" not in err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_memories_command_lists_the_reference(capsys):
    assert main(["memories"]) == 0
    assert "gaussian" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "sandbox", "memories"], capture_output=True, text=True)
    assert done.returncode == 0 and "gaussian" in done.stdout


def test_tasks_command_lists_every_task(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("bigram", "three_moons", "regular_languages", "recall", "oscillators"))


# ---- one-line errors: every mistake the issue lists ends in one line and a non-zero status ----

TINY = ["task=three_moons", "task.length=24", "model=mosaic", "model.d=8", "model.units=2", "model.layers=1",
        "train.steps=4", "train.batch_size=2", "train.log_every=2", "train.eval_every=0", "train.eval_batches=1"]


def one_line_error(capsys, argv, status=2) -> str:
    """Run `sandbox ARGV` in-process; require `status` and a single stderr line; return that line."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"sandbox {argv[0]}: error: "), err
    return err


def test_ordinary_mistakes_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "shape.json").write_text('{"train": 3}')
    cases = [
        (["train", "--config", str(tmp_path / "missing.json")], "--config .*missing.json: no such file"),
        (["train", "--config", str(tmp_path / "shape.json")], "shape.json: train must be an object"),
        (["train", *TINY, f"out={tmp_path / 'afile'}"], "out=.*afile: cannot make the run directory .*a file is in the way"),
        (["train", *TINY, f"out={tmp_path / 'afile' / 'below'}"], "a file is in the way"),
        (["train", "--resume", str(tmp_path / "nothing")], "--resume .*nothing: no such run directory"),
        (["train", "--resume", str(tmp_path)], "not a run directory \\(it has no config.json\\)"),
        (["train", *TINY, f"seed={2**64}"], r"seed must be in \[0, 9223372036854775807\]"),
        (["train", *TINY, "name=../../escaped"], "name must be one directory name inside out"),
        (["train", *TINY, f"name={tmp_path}/abs"], "name must be one directory name inside out"),
        (["train", "--bogus"], r"unrecognized arguments: --bogus \(see sandbox train --help\)"),
        (["figures", "three-moons", "--plot-only", "--out", str(tmp_path / "none")], "--plot-only needs saved results"),
        (["figures", "three-moons", "--preset", "nope", "--plot-only", "--out", str(tmp_path)], "--preset must be one of"),
    ]
    for argv, match in cases:
        assert re.search(match, one_line_error(capsys, argv)), (argv, match)


def test_plot_only_on_empty_or_damaged_results(tmp_path, capsys):
    (tmp_path / "three-moons").mkdir()
    err = one_line_error(capsys, ["figures", "three-moons", "--plot-only", "--out", str(tmp_path)])
    assert "--plot-only: the results in" in err and "missing or damaged" in err and "results.json" in err
    (tmp_path / "three-moons" / "results.json").write_text('{"runs": [')
    assert "missing or damaged" in one_line_error(capsys, ["figures", "three-moons", "--plot-only", "--out", str(tmp_path)])
    (tmp_path / "three-moons" / "results.json").write_text('{"runs": []}')
    assert "missing or damaged (KeyError" in one_line_error(capsys, ["figures", "three-moons", "--plot-only",
                                                                     "--out", str(tmp_path)])


def test_not_writable_is_one_line(tmp_path, capsys, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    err = one_line_error(capsys, ["train", *TINY, f"out={tmp_path / 'ro'}"])
    assert "cannot write the run directory" in err and "permission denied" in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        main(["train", "--debug", "--config", str(tmp_path / "missing.json")])


def test_options_may_come_in_any_order_and_runs_are_protected(tmp_path, capsys):
    argv = ["train", "task=three_moons", "--out", str(tmp_path), *TINY[1:], "name=r"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"run directory: {tmp_path / 'r'}" in out and "final validation metrics at step 4" in out
    # Again into the same directory: refused, nothing touched; --overwrite replaces it.
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    err = one_line_error(capsys, argv)
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before
    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    # Resuming the finished run says so; --resume may change schedule keys only, and never out= or name=.
    assert main(["train", "--resume", str(tmp_path / "r")]) == 0
    assert "the run had already finished at step 4: nothing to train" in capsys.readouterr().out
    err = one_line_error(capsys, ["train", "--resume", str(tmp_path / "r"), "model.d=16"])
    assert "with model.d changed: a resumed run may change only train.{steps,lr," in err
    assert "cannot move it" in one_line_error(capsys, ["train", "--resume", str(tmp_path / "r"), "name=s"])
    with pytest.warns(UserWarning, match="train.steps: 4 -> 6"):
        assert main(["train", "--resume", str(tmp_path / "r"), "train.steps=6"]) == 0
    assert "final validation metrics at step 6" in capsys.readouterr().out


def test_config_of_a_run_makes_a_new_run(tmp_path, capsys):
    assert main(["train", *TINY, f"out={tmp_path}"]) == 0
    (first,) = tmp_path.iterdir()
    capsys.readouterr()
    assert main(["train", "--config", str(first / "config.json"), "train.steps=2"]) == 0
    assert len(list(tmp_path.iterdir())) == 2  # a new default name: the first run is untouched
    assert "already holds a run" in one_line_error(capsys, ["train", "--config", str(first / "config.json")])


def test_divergence_is_one_line_and_resumable_with_a_lower_lr(tmp_path, capsys, nan_loss_at):
    argv = ["train", *TINY, f"out={tmp_path}", "name=r", "train.checkpoint_every=1"]
    poisoned = nan_loss_at(3)
    err = one_line_error(capsys, argv, status=1)
    poisoned.undo()
    assert re.search(r"error: training diverged: the training loss became nan at step 3; the newest checkpoint "
                     r"before it \(step 2\) is kept\. Resume with a lower learning rate: sandbox train --resume "
                     r".*r train.lr=0.0001  \(--debug shows", err), err
    with pytest.warns(UserWarning, match="resuming at step 2 with train.lr: 0.001 -> 0.0001"):
        assert main(["train", "--resume", str(tmp_path / "r"), "train.lr=1e-4"]) == 0
    assert "final validation metrics at step 4" in capsys.readouterr().out
    err = one_line_error(capsys, ["train", *TINY, f"out={tmp_path}", "name=s", "train.lr=1e30"], status=1)
    assert "at step 1; no checkpoint from before it (train.checkpoint_every=0): a resumed run starts again" in err
    with pytest.warns(UserWarning, match="holds no checkpoint yet; starting again from step 0"):
        assert main(["train", "--resume", str(tmp_path / "s"), "train.lr=1e-3"]) == 0


def test_a_busy_run_directory_is_one_line_naming_the_holder(tmp_path, capsys):
    from sandbox.io import DirectoryLock

    (tmp_path / "r").mkdir()
    with DirectoryLock(tmp_path / "r"):
        err = one_line_error(capsys, ["train", *TINY, f"out={tmp_path}", "name=r"], status=1)
    assert f"is in use by process {os.getpid()}" in err


def test_real_processes_print_one_line(tmp_path):
    for argv, status, match in [(["train", "model.d=abc"], 2, "sandbox train: error: model.d: expected an integer"),
                                (["train", "--config", str(tmp_path / "x.json")], 2, "x.json: no such file"),
                                (["nope"], 2, "sandbox: error: argument COMMAND: invalid choice: 'nope'")]:
        done = subprocess.run([sys.executable, "-m", "sandbox", *argv], capture_output=True, text=True)
        assert done.returncode == status and done.stderr.count("\n") == 1 and match in done.stderr, done.stderr


# ---- fuzz: random wrong input never gives a traceback, always one line and exit status 2 ----

FIELDS = {group: {f.name for f in dataclasses.fields(obj)} for group, obj in
          (("task", RunConfig().task), ("model", RunConfig().model), ("train", RunConfig().train))}
VALID = ["task=three_moons", "model=mosaic", "model.d=8", "train.steps=3", "seed=1", "train.lr=0.01",
         "task.length=24", "train.amp=false", "train.betas=0.9,0.99"]
INT_KEYS = ["train.steps", "train.batch_size", "model.d", "seed", "train.log_every", "task.length"]
FLOAT_KEYS = ["train.lr", "train.weight_decay", "train.momentum", "train.grad_clip"]
BOOL_KEYS = ["train.amp", "train.compile", "train.deterministic"]
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
word = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,9}", fullmatch=True)


def fails(parse):
    def check(value: str) -> bool:
        try:
            parse(value.strip())
        except ValueError:
            return True
        return False
    return check


def as_bool(value: str) -> bool:
    if value.lower() not in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        raise ValueError(value)
    return True


number = st.floats(allow_nan=True, allow_infinity=True).map(repr)
bad_overrides = st.one_of(
    # unknown keys, top-level or in a group, and unknown groups
    st.tuples(word.filter(lambda k: k not in {"seed", "out", "name", "task", "model"}), text).map("=".join),
    st.tuples(st.sampled_from(sorted(FIELDS)), word, text).filter(lambda t: t[1] not in FIELDS[t[0]])
    .map(lambda t: f"{t[0]}.{t[1]}={t[2]}"),
    st.tuples(word.filter(lambda g: g not in FIELDS), word, text).map(lambda t: f"{t[0]}.{t[1]}={t[2]}"),
    # wrong types
    st.tuples(st.sampled_from(INT_KEYS), text.filter(fails(int))).map("=".join),
    st.tuples(st.sampled_from(FLOAT_KEYS), text.filter(fails(float))).map("=".join),
    st.tuples(st.sampled_from(BOOL_KEYS), text.filter(fails(as_bool))).map("=".join),
    # out of range
    st.integers(max_value=0).map("train.steps={}".format),
    st.integers(max_value=0).map("model.d={}".format),
    st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63)).map("seed={}".format),
    st.one_of(st.floats(max_value=0.0).map(repr), st.sampled_from(["nan", "inf", "-inf"])).map("train.lr={}".format),
    st.one_of(st.floats(min_value=1.0), st.floats(max_value=-1e-9)).map(repr).map("train.momentum={}".format),
    st.integers(min_value=10**4).map("train.warmup_steps={}".format),
    st.integers(max_value=1).map("task.length={}".format),
    st.sampled_from(["../up", "/abs", "a/b", ".hidden", "..", "with space"]).map("name={}".format),
    # malformed: no '=' (and not an option)
    text.filter(lambda t: "=" not in t and not t.startswith("-")),
    st.tuples(st.sampled_from(["task", "model"]), word.filter(lambda n: n not in ("three_moons", "mosaic")))
    .map("=".join),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.lists(bad_overrides, min_size=1, max_size=3), good=st.lists(st.sampled_from(VALID), max_size=4),
       order=st.randoms(use_true_random=False), out_at=st.integers(0, 7))
def test_fuzz_bad_overrides_are_one_line_and_exit_2(bad, good, order, out_at, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sandbox.train.train", lambda *a, **k: pytest.fail(f"a bad override trained: {bad}"))
    keys = {item.partition("=")[0].strip() for item in bad}
    items = bad + [item for item in good if item.partition("=")[0] not in keys]  # a later override would win
    order.shuffle(items)
    items[out_at % (len(items) + 1):out_at % (len(items) + 1)] = ["--out", str(tmp_path)]  # options anywhere
    capsys.readouterr()
    err = one_line_error(capsys, ["train", *items])
    named = [item.partition("=")[0].strip().rpartition(".")[2] if "=" in item else item for item in bad]
    assert any(n in err or repr(n)[1:-1] in err for n in named), (bad, err)  # names the key or the item
    assert not any(tmp_path.iterdir())


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text)
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(text, inner, max_size=3)), max_leaves=8)
wrong_leaf = st.one_of(st.lists(json_value, min_size=1, max_size=2).filter(
    lambda v: not all(isinstance(x, (str, int, float, bool, type(None))) for x in v)),
    st.dictionaries(text, json_value, max_size=2))
bad_config = st.one_of(
    json_value.filter(lambda v: not isinstance(v, dict)),  # not an object at all
    st.fixed_dictionaries({}, optional={"seed": st.just(1)}).flatmap(  # an unknown top-level key
        lambda d: st.tuples(word.filter(lambda k: k not in {"task", "model", "train", "seed", "out", "name"}),
                            json_leaf).map(lambda kv: {**d, kv[0]: kv[1]})),
    st.tuples(st.sampled_from(["task", "model", "train"]), json_value.filter(lambda v: not isinstance(v, dict)))
    .map(lambda kv: {kv[0]: kv[1]}),  # a section that is not an object
    st.tuples(st.sampled_from(["train"]), st.sampled_from(["steps", "batch_size", "log_every"]),
              st.one_of(wrong_leaf, text.filter(fails(int)), st.floats().filter(lambda x: x != int(x) if
                                                                                  math.isfinite(x) else True),
                        st.booleans(), st.integers(max_value=0)))
    .map(lambda t: {t[0]: {t[1]: t[2]}}),  # a wrong leaf
    st.tuples(st.sampled_from(sorted(FIELDS)), word, json_leaf).filter(lambda t: t[1] not in FIELDS[t[0]])
    .map(lambda t: {t[0]: {t[1]: t[2]}}),  # an unknown field
)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.one_of(bad_config.map(json.dumps), st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
                        json_value.map(json.dumps).map(lambda s: s[:-1] if len(s) > 1 else "{")))
def test_fuzz_bad_config_files_are_one_line_and_exit_2(config, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sandbox.train.train", lambda *a, **k: pytest.fail(f"a bad config trained: {config}"))
    path = tmp_path / "config.json"
    path.write_text(config, encoding="utf-8", errors="surrogatepass")
    capsys.readouterr()
    assert str(path) in one_line_error(capsys, ["train", "--config", str(path), f"out={tmp_path / 'runs'}"])


SHORTER = {"three-moons": {"steps": 2, "contexts": [20]}, "regular-languages": {"steps": 2, "automata": [20]},
           "induction-heads": {"steps": 2, "compare_steps": 2, "eval_every": 1, "freeze_until": 1},
           "variants": {"steps": 2, "models": ["mosaic_v1"]}}


@pytest.mark.parametrize("family", sorted(SHORTER))
def test_figures_compute_again_into_the_same_directory(family, tmp_path):
    # The figure scripts train into out/FAMILY/runs/NAME: computing again replaces those runs on purpose.
    import importlib

    from figures import FAMILIES

    module = importlib.import_module(FAMILIES[family])
    preset = {**module.PRESETS["tiny"], **SHORTER[family]}
    first = module.compute(preset, tmp_path, progress=False)
    assert any((tmp_path / "runs").iterdir())
    again = module.compute(preset, tmp_path, progress=False)
    assert without_wall_times(again) == without_wall_times(first)  # the same seeds: the same numbers


def without_wall_times(results):
    if isinstance(results, dict):
        return {k: without_wall_times(v) for k, v in results.items() if "wall" not in k}
    if isinstance(results, list):
        return [without_wall_times(v) for v in results]
    return results
