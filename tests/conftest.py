"""Shared test set-up: hypothesis profiles and the Agg backend.

HYPOTHESIS_PROFILE=slow draws ten times more examples at random; HYPOTHESIS_PROFILE=mutation draws a quarter
of the `ci` examples, unshrunk like them, for the many reruns of mutation testing
(tests/mutation/README.md). The default `ci` profile is derandomized: the same examples on every run, so a
declared give-up (a strict expected failure) fails the same way in CI as here instead of passing when a
random draw misses its counterexample. It does not shrink a failing example: a test fails on the same
examples either way, and shrinking, which reruns the test hundreds of times, is what made the expected
failures (a kernel's given-up claims, the broken memories of tests/property) the slowest tests of the suite.
The `slow` profile shrinks, for a minimal counterexample to debug with.
"""

import math
import os

import matplotlib
import pytest
from hypothesis import HealthCheck, Phase, settings

matplotlib.use("Agg")

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
)
settings.register_profile(
    "slow", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(  # mutation testing (tests/mutation/README.md): each surviving mutant reruns the claims
    "mutation", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def nan_loss_at(monkeypatch):
    """`nan_loss_at(step)`: the next run's training loss becomes NaN at `step` (counted from its start),
    as too large a learning rate would make it; `.undo()` on the returned monkeypatch restores it."""
    import sandbox.train as engine

    def poison(bad_step: int):
        real_build = engine.build

        def build(config, device):
            task, model = real_build(config, device)
            real_batch, real_loss, poisoned = task.batch, task.loss, [False]

            def batch(split, index, *args, **kwargs):
                poisoned[0] = split == "train" and index == bad_step
                return real_batch(split, index, *args, **kwargs)

            task.batch = batch
            task.loss = lambda out, batch: real_loss(out, batch) * (math.nan if poisoned[0] else 1.0)
            return task, model

        monkeypatch.setattr(engine, "build", build)
        return monkeypatch

    return poison
