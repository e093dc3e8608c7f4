"""The property suite can fail: each claim is run on a deliberately broken memory and must reject it.

Without this file a claim that silently passes everything would look like a claim that holds.
"""

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

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

    def log_kernel(self, sq_dist, beta):
        raise AssertionError("unused")

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


@pytest.mark.parametrize(
    "claim, broken",
    [
        (claims.test_1_convex_combination, NoNormalisation),
        (claims.test_2_permutation_and_duplication, OrderBias),
        (claims.test_3_constants_and_affine_in_values, NoNormalisation),
        (claims.test_4_translation_and_rotation_invariance, DotProductEverywhere),
        (claims.test_5_bandwidth_limits, FixedBandwidth),
        (claims.test_6_unit_norm_keys_give_softmax_attention, LaplaceKernel),
        (claims.test_7_gradcheck, DetachedBeta),
        (claims.test_8_streaming_equals_batch, LastPairForgotten),
        (claims.test_9_causality, PeeksAhead),
        (claims.test_10_consistency, FixedBandwidth),
    ],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_claim_rejects_a_broken_memory(claim, broken):
    with pytest.raises((AssertionError, GradcheckError, ExceptionGroup)):
        claim(broken)
