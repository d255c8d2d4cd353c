"""Amended-DARTS: the finite-difference Hessian products against double backward, and
the amended gradient assembled from them.
"""

from __future__ import annotations

import pytest
import torch
from exact_helpers import SMOOTH_RADIUS, close, context, make, make_batch

from harness.methods.amended import amended_gradient, hessian_vector, mixed_hessian_vector
from harness.methods.base import weight_params

pytestmark = pytest.mark.usefixtures("float64_default")


def test_amended_finite_differences_match_autograd_hessian_products() -> None:
    method, ctx = make("amended")
    assert method.options.fd_radius == 0.01
    with torch.no_grad():
        method.alpha.normal_(0, 0.5)
    train = make_batch(seed=5)
    params = weight_params(method.model)
    saved = [p.detach().clone() for p in params]
    vector = [torch.randn_like(p) for p in params]

    grads = torch.autograd.grad(ctx.loss(train, method.edge_weights()), params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vector, strict=True))
    exact_hv = torch.autograd.grad(dot, params, retain_graph=True)
    exact_mixed = torch.autograd.grad(dot, method.alpha)

    hv = hessian_vector(ctx, method, train, vector, SMOOTH_RADIUS)
    mixed = mixed_hessian_vector(ctx, method, train, vector, SMOOTH_RADIUS)
    assert close(hv, list(exact_hv), rtol=1e-6)
    assert close(mixed, list(exact_mixed), rtol=1e-6)
    assert all(torch.equal(p, s) for p, s in zip(params, saved, strict=True))  # w restored


def test_amended_gradient_combines_the_pieces() -> None:
    method, ctx = make("amended", eta=0.3)
    train, valid = make_batch(seed=5), make_batch(seed=6)
    params = weight_params(method.model)
    saved = [p.detach().clone() for p in params]
    val = torch.autograd.grad(ctx.loss(valid, method.edge_weights()), [method.alpha, *params])
    g_val, v = val[0], list(val[1:])
    u = hessian_vector(ctx, method, train, v, 0.01)
    z = mixed_hessian_vector(ctx, method, train, u, 0.01)[0]
    grads, ratio = amended_gradient(ctx, method, train, valid, method.options)
    assert close(grads[0], g_val - 0.3 * z)
    assert float(ratio) == pytest.approx(float((0.3 * z).norm() / g_val.norm()))
    assert all(torch.equal(p, s) for p, s in zip(params, saved, strict=True))

    method.options.normalize_c = 0.5
    grads, _ = amended_gradient(ctx, method, train, valid, method.options)
    assert float((grads[0] - g_val).norm()) == pytest.approx(0.5 * float(g_val.norm()))


def test_amended_autograd_products_agree_with_smooth_finite_differences() -> None:
    fd, ctx = make("amended", fd_radius=SMOOTH_RADIUS)
    exact, _ = make("amended", hessian="autograd")
    exact.model.load_state_dict(fd.model.state_dict())
    with torch.no_grad():
        fd.alpha.normal_(0, 0.5)
        exact.alpha.copy_(fd.alpha)
    train, valid = make_batch(seed=5), make_batch(seed=6)
    g_fd, _ = amended_gradient(ctx, fd, train, valid, fd.options)
    exact_ctx = context(exact, ctx.w_optimizer, 0, 50)
    g_exact, _ = amended_gradient(exact_ctx, exact, train, valid, exact.options)
    assert close(g_exact, g_fd, rtol=1e-6)
