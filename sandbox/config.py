"""Run configuration: typed dataclasses, dotted command-line overrides, JSON round trip.

    sandbox train task=bigram model=mosaic model.d=128 train.steps=500 seed=1

`task=NAME` and `model=NAME` pick a registered task or model config (each validates itself);
`task.FIELD=VALUE`, `model.FIELD=VALUE`, `train.FIELD=VALUE` and top-level `seed=`, `name=` set fields.
Values are parsed by the field's annotated type. Unknown keys and out-of-range values are errors that
name the dotted key. A run saves its resolved config as JSON; `RunConfig.load` reads it back, and a
missing, unreadable or wrongly shaped file is an error naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.validation import check_choice, check_fraction, check_int, check_positive

MAX_SEED = 2**63 - 1  # seeds reach torch generators, which take 64-bit signed integers
_RUN_NAME = re.compile(r"[\w][\w.+=,@-]*")  # one directory name: no separator, no leading dot


@dataclass
class TrainConfig:
    """How to train: optimiser, schedule, clipping, evaluation, checkpoints, device."""

    steps: int = 1000
    batch_size: int = 32
    optimizer: str = "adamw"  # "adamw" or "sgd" (with momentum)
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    schedule: str = "cosine"  # after warm-up: "cosine", "linear" or "constant"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.1  # the schedule ends at lr · final_lr_fraction
    grad_clip: float = 0.0  # max global gradient norm; 0 = off
    log_every: int = 10
    eval_every: int = 100  # 0 = only at the end
    eval_batches: int = 4
    checkpoint_every: int = 0  # 0 = only at the end
    keep_checkpoints: int = 3  # the newest checkpoints kept; resume falls back to an older one if damaged
    amp: bool = False  # bfloat16 autocast, CUDA only
    compile: bool = False
    deterministic: bool = False
    device: str = "auto"  # "auto" (cuda, then mps, then cpu) or a torch device string

    def __post_init__(self):
        check_int(self.steps, "steps", low=1)
        check_int(self.batch_size, "batch_size", low=1)
        check_choice(self.optimizer, "optimizer", {"adamw", "sgd"})
        check_positive(self.lr, "lr")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        for b in self.betas:
            check_fraction(b, "betas", open_high=True)
        check_fraction(self.momentum, "momentum", open_high=True)
        check_choice(self.schedule, "schedule", {"cosine", "linear", "constant"})
        check_int(self.warmup_steps, "warmup_steps", low=0, high=self.steps)
        check_fraction(self.final_lr_fraction, "final_lr_fraction")
        if not 0 <= self.grad_clip < math.inf:
            raise ValueError(f"grad_clip must be a finite number >= 0 (0 = off), got {self.grad_clip}")
        check_int(self.log_every, "log_every", low=1)
        check_int(self.eval_every, "eval_every", low=0)
        check_int(self.eval_batches, "eval_batches", low=1)
        check_int(self.checkpoint_every, "checkpoint_every", low=0)
        check_int(self.keep_checkpoints, "keep_checkpoints", low=1)
        if not isinstance(self.device, str) or not self.device:
            raise TypeError(f"device must be a device name such as 'auto', 'cpu' or 'cuda:0', got {self.device!r}")


# What `--resume RUN train.KEY=...` may change: how the remaining steps are scheduled, logged and
# checkpointed, never what is trained (task, model, seed, batch, optimiser).
SCHEDULE_KEYS = ("steps", "lr", "schedule", "warmup_steps", "final_lr_fraction", "grad_clip", "log_every",
                 "eval_every", "checkpoint_every", "keep_checkpoints")


@dataclass
class RunConfig:
    """One run: a task config, a model config, the training config, the seed and where results go."""

    task: typing.Any = None
    model: typing.Any = None
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    out: str = "runs"
    name: str = ""  # run directory name under `out`; empty = task-model-seed-<digest of the config>

    def __post_init__(self):
        check_int(self.seed, "seed", low=0, high=MAX_SEED)
        if not isinstance(self.out, str) or not self.out:
            raise TypeError(f"out must be a directory path, got {self.out!r}")
        if not isinstance(self.name, str) or (self.name and not _RUN_NAME.fullmatch(self.name)):
            raise ValueError(f"name must be one directory name inside out (letters, digits and . _ - + = , @; "
                             f"no path separator, not starting with a dot), got {self.name!r}")
        if self.task is None:
            self.task = _lookup("task", "three_moons")()
        if self.model is None:
            self.model = _lookup("model", "mosaic")()

    @property
    def run_dir(self) -> Path:
        """`out/name`; the default name ends in a digest of the config, so different configs never share it."""
        return Path(self.out) / (self.name or f"{self.task.name}-{self.model.name}-seed{self.seed}-{self.digest()}")

    def digest(self) -> str:
        """8 hex digits identifying what is run (everything but `out` and `name`)."""
        what = {k: v for k, v in self.to_dict().items() if k not in ("out", "name")}
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]

    def to_dict(self) -> dict:
        return {
            "task": {"name": self.task.name, **_fields(self.task)},
            "model": {"name": self.model.name, **_fields(self.model)},
            "train": _fields(self.train),
            "seed": self.seed, "out": self.out, "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        _check_shape(data)
        data = dict(data)
        overrides = []
        for group in ("task", "model"):
            section = dict(data.pop(group, {}))
            if "name" in section:  # a config saved by an earlier version: its class says how to read it
                section = getattr(_lookup(group, section["name"]), "upgrade", lambda saved: saved)(section)
            if "name" in section:
                overrides.append(f"{group}={section.pop('name')}")
            overrides += [f"{group}.{k}={_format(v)}" for k, v in section.items()]
        overrides += [f"train.{k}={_format(v)}" for k, v in data.pop("train", {}).items()]
        overrides += [f"{k}={_format(v)}" for k, v in data.items()]
        return parse_overrides(overrides)

    def save(self, path) -> Path:
        from sandbox.io import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "RunConfig":
        """Read a saved config.json; any problem is a ValueError/TypeError naming the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ValueError(f"{path} is a directory; give the config.json inside it") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a text (JSON) file") from None
        except OSError as err:
            raise ValueError(f"{path}: cannot read it ({err.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply to be a config") from None
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{path}: {err}") from None


def dotted(tree: dict, prefix: str = "") -> dict:
    """A nested dict as one level with dotted keys, as overrides name them: {"train": {"lr": 1}} -> {"train.lr": 1}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_shape(data) -> None:
    """A saved config is an object of sections; each leaf a JSON scalar or a list of scalars."""
    if not isinstance(data, dict):
        raise TypeError(f"a config must be a JSON object with task, model, train, seed, out and name, "
                        f"got {type(data).__name__}")

    def check_leaf(key: str, value) -> None:
        scalar = (str, int, float, bool, type(None))
        if isinstance(value, (list, tuple)) and all(isinstance(v, scalar) for v in value):
            return
        if not isinstance(value, scalar):
            raise TypeError(f"{key} must be a number, a string, true/false, null or a list of those, "
                            f"got {type(value).__name__}")

    for key, value in data.items():
        if key in ("task", "model", "train"):
            if not isinstance(value, dict):
                raise TypeError(f"{key} must be an object of {key}.FIELD values, got {type(value).__name__}")
            for name, leaf in value.items():
                check_leaf(f"{key}.{name}", leaf)
            if key != "train" and not isinstance(value.get("name", ""), str):
                raise TypeError(f"{key}.name must be the name of a registered {key}, got {value['name']!r}")
        else:
            check_leaf(str(key), value)


def _lookup(group: str, name: str) -> type:
    if group == "task":
        from tasks import get_task

        return get_task(name)
    from sandbox.models import MODELS

    return MODELS[name]


def _fields(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


def _format(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_format(v) for v in value)
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_value(text: str, kind, key: str):
    """Parse `text` as the annotated type `kind` (int, float, bool, str, X | None, tuple[...])."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)] or [str]
        return parse_value(text, inner, key)
    if origin is tuple:
        parts = [p for p in text.split(",") if p.strip()] if text.strip() else []
        inner = args[0] if args else str
        return tuple(parse_value(p.strip(), inner, key) for p in parts)
    if kind is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{key}: expected true or false, got {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is typing.Any:
        return text
    return text


def _replace(obj, key: str, changes: dict):
    """dataclasses.replace with the config's own validation, errors prefixed with the dotted key."""
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj) if f.init]
    parsed = {}
    for name, text in changes.items():
        if name not in names:
            raise ValueError(f"unknown key '{key}.{name}'; valid keys for {key} ({getattr(obj, 'name', key)}) "
                             f"are: {', '.join(names)}")
        parsed[name] = parse_value(text, hints[name], f"{key}.{name}")
    try:
        return dataclasses.replace(obj, **parsed)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{key}: {err}") from None


def parse_overrides(overrides: list[str], base: RunConfig | None = None) -> RunConfig:
    """Apply `key=value` overrides to `base` (default: the defaults) and return a validated RunConfig."""
    base = base or RunConfig()
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value, e.g. model.d=128")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value.strip()))
    task, model = base.task, base.model
    for key, value in pairs:  # selections first, so field overrides apply to the chosen config
        if key == "task" and value != task.name:
            task = _lookup("task", value)()
        elif key == "model" and value != model.name:
            model = _lookup("model", value)()
    groups = {"task": {}, "model": {}, "train": {}}
    top = {}
    for key, value in pairs:
        if key in ("task", "model"):
            continue
        group, dot, name = key.partition(".")
        if dot and group in groups:
            groups[group][name] = value
        elif not dot:
            top[key] = value
        else:
            raise ValueError(f"unknown key {key!r}; keys are task=, model=, task.FIELD=, model.FIELD=, "
                             f"train.FIELD=, seed=, out=, name=")
    task = _replace(task, "task", groups["task"])
    model = _replace(model, "model", groups["model"])
    train = _replace(base.train, "train", groups["train"])
    run = dataclasses.replace(base, task=task, model=model, train=train)
    top_level = {"seed", "out", "name"}
    unknown = set(top) - top_level
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r}; top-level keys are {sorted(top_level)} "
                         "(others go under task., model. or train.)")
    hints = typing.get_type_hints(RunConfig)
    return dataclasses.replace(run, **{k: parse_value(v, hints[k], k) for k, v in top.items()})
