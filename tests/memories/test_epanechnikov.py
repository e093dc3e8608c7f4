"""The Epanechnikov kernel max(0, 1 - β‖q - k‖²) by hand: weights, reach, and the edge of the support."""

import torch

from sandbox.registry import get_kernel

f64 = torch.float64


def test_epanechnikov_weights_by_hand():
    # q = 0, β = 1; keys at 0, 1/2, 1 (on the edge: β‖q - k‖² = 1) and 6/5 (outside, β‖q - k‖² = 1.44):
    # K = 1, 3/4, 0, 0, so w = (4/7, 3/7, 0, 0) and f = (4·1 + 3·2)/7.
    kernel = get_kernel("epanechnikov")()
    query = torch.zeros(1, 1, dtype=f64)
    keys = torch.tensor([[0.0], [0.5], [1.0], [1.2]], dtype=f64)
    values = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=f64)
    torch.testing.assert_close(kernel.weights(query, keys, 1.0), torch.tensor([[4 / 7, 3 / 7, 0.0, 0.0]], dtype=f64),
                               rtol=0, atol=1e-15)
    assert abs(float(kernel.retrieve(query, keys, values, 1.0)) - 10 / 7) < 1e-15
    # β scales the squared distance: at β = 4 the key at 1/2 is on the edge too (4·1/4 = 1): only the first is left.
    torch.testing.assert_close(kernel.weights(query, keys, 4.0), torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=f64),
                               rtol=0, atol=1e-15)


def test_epanechnikov_gradient_is_finite_at_the_edge_of_the_support():
    """A key exactly at distance 1/√β has K = 0 and no weight; its log-kernel's slope there is
    infinite, so it must count as outside (zero gradient), not inside (a NaN gradient)."""
    kernel = get_kernel("epanechnikov")()
    query = torch.zeros(1, 1, dtype=f64, requires_grad=True)
    keys = torch.tensor([[1.0], [0.5], [-0.25]], dtype=f64, requires_grad=True)  # the first on the edge at β = 1
    values = torch.tensor([[5.0], [2.0], [-1.0]], dtype=f64)
    out = kernel.retrieve(query, keys, values, 1.0)
    grad_q, grad_k = torch.autograd.grad(out.sum(), (query, keys))
    # By hand over the two keys inside: K_i = 1 - d_i², w = K/ΣK, ∂f/∂q = Σ w_i (v_i - f) ∂log K_i/∂q
    # with ∂log K_i/∂q = -2(q - k_i)/K_i; the key on the edge contributes nothing.
    k = torch.tensor([0.75, 1 - 0.0625], dtype=f64)
    w = k / k.sum()
    f = float((w * values[1:, 0]).sum())
    slopes = -2 * (0.0 - keys[1:, 0].detach()) / k
    expected_q = float((w * (values[1:, 0] - f) * slopes).sum())
    assert abs(float(grad_q) - expected_q) < 1e-14
    assert float(grad_k[0, 0]) == 0.0
    torch.testing.assert_close(grad_k[1:, 0], -(w * (values[1:, 0] - f) * slopes), rtol=0, atol=1e-14)
