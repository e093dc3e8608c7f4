"""The Laplace kernel exp(-β‖q - k‖) by hand: weights, and the subgradient at a stored key."""

import math

import torch

from sandbox.registry import get_kernel

f64 = torch.float64


def test_laplace_weights_by_hand():
    # q = 0; keys at distances 0, 1/2 and 5; β = 2 ln 2: K = 1, 1/2, 2^-10 (exponential in the distance,
    # not its square: the key at 1/2 would weigh 2^-1/2 under exp(-β‖q - k‖²)).
    kernel = get_kernel("laplace")()
    query = torch.zeros(1, 2, dtype=f64)
    keys = torch.tensor([[0.0, 0.0], [0.3, 0.4], [3.0, 4.0]], dtype=f64)
    values = torch.tensor([[1.0], [2.0], [3.0]], dtype=f64)
    beta = 2 * math.log(2)
    k = [1.0, 0.5, 2.0**-10]
    expected = [x / sum(k) for x in k]
    torch.testing.assert_close(kernel.weights(query, keys, beta), torch.tensor([expected], dtype=f64), rtol=0, atol=1e-15)
    f = sum(w * v for w, v in zip(expected, (1.0, 2.0, 3.0)))
    assert abs(float(kernel.retrieve(query, keys, values, beta)) - f) < 1e-15


def test_laplace_gradient_at_a_stored_key_is_the_subgradient():
    """‖q - k‖ has a corner at q = k: the key the query sits on contributes the subgradient 0 to the
    log-kernel's gradient, never sqrt's infinite slope (which would make the gradient NaN)."""
    kernel = get_kernel("laplace")()
    keys = torch.tensor([[0.0, 0.0], [0.3, 0.4], [-1.2, 0.5]], dtype=f64)
    values = torch.tensor([[1.0], [2.0], [-3.0]], dtype=f64)
    beta = 0.7
    query = keys[:1].clone().requires_grad_()  # exactly on the first key
    (grad,) = torch.autograd.grad(kernel.retrieve(query, keys, values, beta).sum(), query)
    # By hand: f = Σ w_i v_i with log w_i = -β d_i + c, so ∂f/∂q = Σ w_i (v_i - f) ∂(-β d_i)/∂q,
    # ∂d_i/∂q = (q - k_i)/d_i for d_i > 0 and 0 (the subgradient) for the key under the query.
    d = [0.0, 0.5, 1.3]
    k = [math.exp(-beta * x) for x in d]
    w = [x / sum(k) for x in k]
    f = sum(wi * float(v) for wi, v in zip(w, values[:, 0]))
    expected = torch.zeros(2, dtype=f64)
    for i in (1, 2):
        expected += w[i] * (float(values[i, 0]) - f) * (-beta) * (query[0].detach() - keys[i]) / d[i]
    torch.testing.assert_close(grad[0], expected, rtol=0, atol=1e-14)
