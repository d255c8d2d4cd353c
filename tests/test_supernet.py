"""The fused supernet equals the reference implementation: outputs, gradients, BN state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.supernet import SuperNet


def pair(**kwargs: object) -> tuple[SuperNet, SuperNet]:
    torch.manual_seed(0)
    reference = SuperNet(C=4, N=2, impl="reference", **kwargs).double()
    fused = SuperNet(C=4, N=2, impl="fused", **kwargs).double()
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def grads(model: SuperNet, x: torch.Tensor, alpha: torch.Tensor) -> list[torch.Tensor]:
    out = model(x, alpha.softmax(-1))
    return list(torch.autograd.grad(out.square().sum(), [alpha, *model.parameters()]))


@pytest.mark.parametrize("track", [False, True])
@pytest.mark.parametrize("node_bn", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (3, 6, 5), (6, 6, 5)])
def test_fused_equals_reference(track: bool, node_bn: bool, shape: tuple[int, ...]) -> None:
    reference, fused = pair(track_running_stats=track, node_bn=node_bn)
    x = torch.randn(6, 3, 16, 16, dtype=torch.double)
    alpha = torch.randn(shape, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(fused(x, alpha.softmax(-1)), reference(x, alpha.softmax(-1)))
    for g_fused, g_ref in zip(grads(fused, x, alpha), grads(reference, x, alpha), strict=True):
        torch.testing.assert_close(g_fused, g_ref)
    for (name, a), b in zip(
        reference.state_dict().items(), fused.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_eval_mode_with_running_stats_matches() -> None:
    reference, fused = pair(track_running_stats=True)
    x = torch.randn(6, 3, 16, 16, dtype=torch.double)
    w = torch.randn(6, 5, dtype=torch.double).softmax(-1)
    reference(x, w), fused(x, w)  # one training pass updates the running statistics
    reference.eval(), fused.eval()
    torch.testing.assert_close(fused(x, w), reference(x, w))


def test_active_mask_skips_zero_ops_exactly() -> None:
    reference, fused = pair()
    x = torch.randn(4, 3, 16, 16, dtype=torch.double)
    for ops in ([3, 0, 2, 1, 4, 3], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [4, 2, 0, 3, 0, 1]):
        onehot = F.one_hot(torch.tensor(ops), 5).double()
        torch.testing.assert_close(fused(x, onehot, onehot.bool()), reference(x, onehot))


def test_pruned_ops_mask_matches_zeroed_weights() -> None:
    reference, fused = pair()
    x = torch.randn(4, 3, 16, 16, dtype=torch.double)
    w = torch.rand(6, 5, dtype=torch.double)
    active = torch.rand(6, 5) > 0.4
    w = w * active
    torch.testing.assert_close(fused(x, w, active), reference(x, w))


def test_bad_weight_shape_is_rejected() -> None:
    _, fused = pair()
    with pytest.raises(ValueError, match="edge weights must be"):
        fused(torch.randn(2, 3, 16, 16, dtype=torch.double), torch.ones(4, 6, 5).double())


def test_paper_shape_parameter_count() -> None:
    """C=16, N=5: the NB201 search network's size is fixed by the skeleton."""
    model = SuperNet(C=16, N=5)
    cells = [m for m in model.layers if m.__class__.__name__ == "SearchCell"]
    assert len(cells) == 15
    per_cell_16 = 6 * (16 * 16 * 9 + 16 + 16 * 16 + 16)
    assert sum(p.numel() for p in cells[0].parameters()) == per_cell_16
    logits = model(torch.randn(2, 3, 32, 32), torch.full((6, 5), 0.2))
    assert logits.shape == (2, 10)
