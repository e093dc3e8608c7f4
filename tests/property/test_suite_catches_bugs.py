"""The property suite can fail: each claim is run on a deliberately broken memory and must reject it
with its own assertion.

Without this file a claim that silently passes everything would look like a claim that holds. A
rejection counts only when every failure hypothesis reports is an `AssertionError` whose message is
one of the checks of that claim the bug is meant to trip; a crash (TypeError, a shape error, an
unrelated AssertionError), a flaky failure or a hypothesis error fails the meta-test instead.
"""

import pytest
import torch
from hypothesis.errors import FlakyFailure, HypothesisException

import test_claims as claims
from sandbox.memories import KernelMemory, strict_past_mask


class NoNormalisation(KernelMemory):
    """exp(-β‖q - k‖²) used as weights without dividing by their sum."""

    def weights(self, queries, keys, beta, *, mask=None):
        return super().logits(queries, keys, beta, mask=mask).exp()


class OrderBias(KernelMemory):
    """Favours pairs stored later: not a function of the set of pairs."""

    def log_kernel(self, sq_dist, beta):
        return -beta * sq_dist + 0.5 * torch.arange(sq_dist.shape[-1], dtype=sq_dist.dtype)


class DotProductEverywhere(KernelMemory):
    """softmax(2β q·k) off the unit sphere: right on unit keys, wrong after a translation."""

    def weights(self, queries, keys, beta, *, mask=None):
        beta = beta[..., None, None] if isinstance(beta, torch.Tensor) else beta
        return torch.softmax(2 * beta * queries @ keys.transpose(-1, -2), -1)


class LaplaceKernel(KernelMemory):
    """exp(-β‖q - k‖): a fine kernel, but not the Gaussian of the attention identity."""

    def log_kernel(self, sq_dist, beta):
        return -beta * sq_dist.sqrt()


class DetachedBeta(KernelMemory):
    """Cuts the gradient with respect to β."""

    def log_kernel(self, sq_dist, beta):
        return -(beta.detach() if isinstance(beta, torch.Tensor) else beta) * sq_dist


class LastPairForgotten(KernelMemory):
    """Streaming that drops the last chunk stored."""

    def stream(self, queries, beta):
        inner = super().stream(queries, beta)

        class Forgetful:
            def __init__(self):
                self.pending = None

            def store(self, keys, values):
                if self.pending is not None:
                    inner.store(*self.pending)
                self.pending = (keys, values)
                return self

            def outputs(self):
                return inner.outputs() if inner.total is not None else torch.zeros_like(queries[..., :1]).expand(*queries.shape[:-1], self.pending[1].shape[-1])

        return Forgetful()


class PeeksAhead(KernelMemory):
    """Causal form whose mask lets each step see the next one."""

    def causal(self, keys, values, beta, *, exclude_current=True):
        mask = strict_past_mask(keys.shape[-2], exclude_current=exclude_current) | torch.ones(
            keys.shape[-2], keys.shape[-2], dtype=torch.bool).triu(1).tril(1)
        return self.retrieve(keys, keys, values, beta, mask=mask)


class FixedBandwidth(KernelMemory):
    """Ignores β: a fixed, wide kernel never converges."""

    def log_kernel(self, sq_dist, beta):
        return -1.0 * sq_dist


def leaves(error: BaseException) -> list[BaseException]:
    """The failures in an exception (group): hypothesis reports several distinct bugs as a group."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def assert_rejected(run, expected: tuple[str, ...]) -> None:
    """`run()` must fail, and each of its failures must be an AssertionError whose message starts with
    one of `expected`; anything else fails the calling test with what was raised instead."""
    try:
        run()
    except (HypothesisException, FlakyFailure) as error:  # flaky, unsatisfiable, health check, ...
        pytest.fail(f"the claim did not fail cleanly: {type(error).__name__}: {error}")
    except Exception as error:  # noqa: BLE001 - every other exception is inspected below
        wrong = [leaf for leaf in leaves(error)
                 if not (type(leaf) is AssertionError and str(leaf).startswith(expected))]
        if wrong:
            shown = "; ".join(f"{type(leaf).__name__}: {str(leaf).splitlines()[0] if str(leaf) else ''!r}"
                              for leaf in wrong)
            pytest.fail(f"expected an assertion starting with one of {expected}, got {shown}")
    else:
        pytest.fail("the claim passed")


CASES = [
    (claims.test_1_convex_combination, NoNormalisation, ("claim 1: the weights do not sum to 1",)),
    (claims.test_2_permutation_and_duplication, OrderBias,
     ("claim 2: permuting the pairs changed f", "claim 2: storing every pair twice changed f")),
    (claims.test_3_constants_and_affine_in_values, NoNormalisation,
     ("claim 3: constant values do not give that constant",)),
    (claims.test_4_translation_and_rotation_invariance, DotProductEverywhere,
     ("claim 4: a translation of keys and queries changed the weights",)),
    (claims.test_5_bandwidth_limits, FixedBandwidth,
     ("claim 5: β → 0 does not give the mean of the values", "claim 5: β → ∞ does not give the value of the nearest key")),
    (claims.test_6_unit_norm_keys_give_softmax_attention, LaplaceKernel,
     ("claim 6: on the unit sphere f is not softmax(2β q·k) attention",)),
    (claims.test_7_gradcheck, DetachedBeta, ("claim 7: analytic and numerical gradients differ",)),
    (claims.test_8_streaming_equals_batch, LastPairForgotten, ("claim 8: streaming differs from the batch form",)),
    # With one admissible key its weight is 1 whatever the key: the peek then shows in the value gradient.
    (claims.test_9_causality, PeeksAhead,
     ("claim 9: the output at t depends on a later key", "claim 9: the output at t depends on an unseen value")),
    (claims.test_10_consistency, FixedBandwidth, ("claim 10: the error does not shrink as n grows",)),
]


@pytest.mark.parametrize("claim, broken, expected", CASES, ids=lambda x: getattr(x, "__name__", "-"))
def test_claim_rejects_a_broken_memory(claim, broken, expected):
    assert_rejected(lambda: claim(broken), expected)


def test_every_claim_has_a_broken_memory():
    claim_tests = {name for name in dir(claims) if name.startswith("test_")}
    assert {claim.__name__ for claim, _, _ in CASES} == claim_tests


def _raise(error):
    def run():
        raise error
    return run


@pytest.mark.parametrize("run", [
    lambda: None,  # the claim passed
    _raise(TypeError("a crash is not a caught bug")),
    _raise(AssertionError("unused")),  # an assertion, but not the claim's
    _raise(AssertionError("claim 6: on the unit sphere f is not softmax(2β q·k) attention")),  # another claim's
    _raise(ExceptionGroup("two bugs", [AssertionError("claim 8: streaming differs from the batch form"),
                                       IndexError("and a crash")])),
    _raise(FlakyFailure("did not reproduce", [AssertionError("claim 8: streaming differs from the batch form")])),
], ids=["passes", "crash", "other-assertion", "other-claim", "group-with-crash", "flaky"])
def test_the_meta_test_accepts_only_the_claims_assertion(run):
    with pytest.raises(pytest.fail.Exception):
        assert_rejected(run, ("claim 8: streaming differs from the batch form",))


def test_the_meta_test_accepts_the_claims_assertion():
    message = "claim 8: streaming differs from the batch form"
    assert_rejected(_raise(AssertionError(f"{message}\ndetails")), (message,))
    assert_rejected(_raise(ExceptionGroup("two", [AssertionError(message), AssertionError(message)])), (message,))
