"""MemoryOptions: each option accepted exactly within its range, refused outside it with its name;
resolve/of/upgrade (the models' and old configs' way in)."""

import dataclasses

import pytest

from sandbox.memories import MemoryOptions
from sandbox.memories.dot_product import DotProductKernel, SphereGaussianKernel


@pytest.mark.parametrize("changes, match", [
    (dict(window=1), r"^window must be in \[2, inf\], got 1$"),
    (dict(lag_range=(0, 5)), r"^lag_range must be in \[1, inf\], got 0$"),
    (dict(lag_range=(3, 2)), r"^lag_range must be in \[3, inf\], got 2$"),
    (dict(lag_range=(1, 2, 3)), r"^lag_range must be two integers \(low, high\), got \(1, 2, 3\)$"),
    (dict(beta=0.0), r"^beta must be finite and > 0, got 0.0$"),
    (dict(gamma=1.5), r"^gamma must be in \[0, 1\], got 1.5$"),
    (dict(beta=1.0, adaptive_beta=True),
     r"^beta \(a fixed β\) and adaptive_beta \(β grows with the pairs stored\) exclude each other: "
     r"set beta=none or adaptive_beta=false$"),
    (dict(gated_keys=True, leak=False), r"^gated_keys gates a leaky average: it needs leak=true$"),
    (dict(kernel="gaussian_sphere", normalise=False),
     r"^kernel 'gaussian_sphere' is defined on the unit sphere and needs normalise=true; for raw keys choose "
     r"a whole-space kernel such as 'dot_product' or 'gaussian'$"),
])
def test_bad_options_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        MemoryOptions(**changes)


def test_options_at_the_ends_of_their_ranges_are_accepted():
    for changes in (dict(window=2), dict(lag_range=(1, 1)), dict(gamma=0.0), dict(gamma=1.0), dict(beta=1e-9),
                    dict(gated_keys=True), dict(adaptive_beta=True), dict(kernel="gaussian_sphere")):
        options = MemoryOptions(**changes)
        assert all(getattr(options, k) == v for k, v in changes.items())


def test_resolve_of_and_make_kernel():
    assert MemoryOptions.resolve() == MemoryOptions()
    base = MemoryOptions(leak=False)
    assert MemoryOptions.resolve(base) is base  # nothing changed: the same object
    changed = MemoryOptions.resolve(base, kernel="gaussian_sphere")
    assert changed == dataclasses.replace(base, kernel="gaussian_sphere") and base.kernel == "dot_product"
    with pytest.raises(ValueError, match="^window must be in"):  # a change is validated again
        MemoryOptions.resolve(base, window=0)
    with pytest.raises(TypeError, match=r"^options must be a MemoryOptions, got dict$"):
        MemoryOptions.resolve({"leak": False})

    @dataclasses.dataclass
    class ModelConfig(MemoryOptions):
        d: int = 8

    config = ModelConfig(leak=False, window=5, d=16)
    assert MemoryOptions.of(config) == MemoryOptions(leak=False, window=5)
    assert MemoryOptions.of(config, window=7) == MemoryOptions(leak=False, window=7)
    assert type(MemoryOptions().make_kernel()) is DotProductKernel
    assert MemoryOptions(kernel="gaussian_sphere").kernel_class() is SphereGaussianKernel


def test_upgrade_of_configs_saved_before_kernels_were_named():
    today = {"kernel": "laplace", "beta": 3.0}
    assert MemoryOptions.upgrade(today) is today  # nothing to upgrade
    saved = {"memory": "gaussian_sphere", "beta": 50.0, "units": 3}
    assert MemoryOptions.upgrade(saved) == {"kernel": "dot_product", "beta": 25.0, "units": 3}
    assert saved == {"memory": "gaussian_sphere", "beta": 50.0, "units": 3}  # the caller's dict is left alone
    assert MemoryOptions.upgrade({"memory": "laplace", "beta": None}) == {"kernel": "laplace", "beta": None}
    assert MemoryOptions.upgrade({"memory": "gaussian"}) == {"kernel": "gaussian"}
