"""RLW: weights softmax(z), z ~ N(0, I), drawn from the method generator each step."""
import torch

from mtlrepro.methods import build


def test_weights_are_a_seeded_softmax_of_normal_draws():
    method = build("rlw", 4, generator=torch.Generator().manual_seed(123))
    reference = torch.Generator().manual_seed(123)
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    for _ in range(3):
        expected = torch.softmax(torch.randn(4, generator=reference), dim=0)
        total = method.combine_losses(losses)
        (grad,) = torch.autograd.grad(total, losses)
        assert torch.allclose(grad, expected, atol=1e-7)  # d total / d L_k = w_k
        assert torch.allclose(total, (expected * losses).sum())
        assert abs(float(grad.sum()) - 1) < 1e-6 and bool((grad > 0).all())
        assert torch.allclose(method.last_weights(), expected)


def test_reproducible_for_a_seed_and_new_each_step():
    def draws(seed):
        method = build("rlw", 3, generator=torch.Generator().manual_seed(seed))
        return torch.stack([method.weights(torch.ones(3)) for _ in range(5)])

    first = draws(7)
    assert torch.equal(first, draws(7))
    assert not torch.equal(first, draws(8))
    assert not torch.allclose(first[0], first[1])


def test_global_rng_untouched():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    build("rlw", 3, generator=torch.Generator().manual_seed(1)).combine_losses(torch.ones(3))
    assert torch.equal(before, torch.get_rng_state())
