"""Properties every method of the baseline library must have: registration, K = 1, zero
gradients / losses, devices, and bit-exact resume through state_dict / load_state_dict."""
import copy
import io
import math

import pytest
import torch

from mtlrepro import methods as registry
from mtlrepro.methods.base import Aggregator, Weighting

WEIGHTINGS = ["si", "rlw", "dwa", "uw", "gls", "tw", "imtl_l", "igbv2"]
AGGREGATORS = ["mgda", "pcgrad", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# Small IGBv2 agent, and a schedule that reaches its RL phase within the test.
IGB = dict(hidden_dim=8, batch_size=8, buffer_size=32, update_every=2, warmup_epochs=1,
           update_after_epochs=1, base_epoch=0)


def _build(name, K, seed=0, device="cpu", **hparams):
    if name == "tw":
        hparams.setdefault("task_sizes", list(range(1, K + 1)))
    if name == "igbv2":
        hparams = {**IGB, **hparams}
    generator = torch.Generator(device=device).manual_seed(seed)
    return registry.build(name, K, generator=generator, **hparams).to(device), generator


def test_registered_with_the_right_kind():
    for name in WEIGHTINGS:
        assert issubclass(registry.get(name), Weighting), name
    for name in AGGREGATORS:
        cls = registry.get(name)
        assert issubclass(cls, Aggregator) and cls.default_level == "representation", name
    assert registry.build("mgda", 2, level="parameters").level == "parameters"


# ------------------------------------------------------------------ K = 1 and zero inputs


@pytest.mark.parametrize("name", AGGREGATORS)
def test_single_task_follows_its_gradient(name):
    g = torch.tensor([[3.0, -4.0, 12.0]], dtype=torch.float64)
    out = registry.combine(name, g, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    cosine = torch.nn.functional.cosine_similarity(out, g[0], dim=0)
    assert float(cosine) > 1 - 1e-12


@pytest.mark.parametrize("name", AGGREGATORS)
def test_zero_gradients_are_handled(name):
    gen = torch.Generator().manual_seed(0)
    G = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5], [-0.5, 1.0, 1.0]], dtype=torch.float64)
    assert torch.isfinite(registry.combine(name, G, generator=gen)).all()
    assert torch.equal(registry.combine(name, torch.zeros(3, 4), generator=gen), torch.zeros(4))
    assert torch.equal(registry.combine(name, torch.zeros(1, 4), generator=gen), torch.zeros(4))


@pytest.mark.parametrize("name", WEIGHTINGS)
@pytest.mark.parametrize("losses", [[0.7], [0.0], [0.0, 1.5, 2.0], [0.0, 0.0, 0.0]])
def test_single_task_and_zero_losses_are_finite(name, losses):
    method, _ = _build(name, len(losses))
    for _ in range(3):
        leaf = torch.tensor(losses, requires_grad=True)
        total = method.combine_losses(leaf)
        total.backward()
        assert math.isfinite(float(total.detach())) and torch.isfinite(leaf.grad).all()
        for p in method.parameters():
            assert p.grad is None or torch.isfinite(p.grad).all()
        method.end_epoch(leaf.detach())


@pytest.mark.parametrize("name", WEIGHTINGS)
@pytest.mark.parametrize("device", DEVICES)
def test_weightings_follow_the_losses_device(name, device):
    method, _ = _build(name, 3, device=device)
    for epoch in range(3):
        losses = torch.tensor([0.5, 1.0, 2.0], device=device, requires_grad=True)
        total = method.combine_losses(losses)
        total.backward()
        assert total.device == losses.device and losses.grad.device == losses.device
        method.end_epoch(losses.detach() * (epoch + 1))


# ------------------------------------------------------------------ resume through state_dict


def _weighting_steps(method, n_steps, start, device):
    """Losses depend on the step; learnable parameters get a plain SGD update each step."""
    outputs = []
    for step in range(start, start + n_steps):
        base = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64, device=device)
        losses = (base * (1 + 0.3 * math.sin(step)) / (1 + 0.1 * step)).requires_grad_(True)
        total = method.combine_losses(losses)
        grads = torch.autograd.grad(total, [losses] + method.parameters())
        with torch.no_grad():
            for p, g in zip(method.parameters(), grads[1:]):
                p -= 0.1 * g
        outputs.append(torch.cat([total.detach().reshape(1), grads[0]]))
        if step % 3 == 2:
            method.end_epoch(losses.detach() * 0.9)
    return torch.stack(outputs)


def _aggregator_steps(method, n_steps, start, device):
    outputs = []
    for step in range(start, start + n_steps):
        g = torch.Generator().manual_seed(1000 + step)
        G = torch.randn(3, 6, generator=g, dtype=torch.float64).to(device)
        outputs.append(method.combine(G))
        method.end_epoch(torch.ones(3))
    return torch.stack(outputs)


def _round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # method states are tensors and plain containers


@pytest.mark.parametrize("name", WEIGHTINGS + AGGREGATORS + ["ls"])
@pytest.mark.parametrize("serialise", [False, True])
def test_state_dict_resume_is_bit_exact(name, serialise):
    device = "cpu"
    run = _aggregator_steps if name in AGGREGATORS else _weighting_steps
    hparams = {"update_every": 2} if name == "nash_mtl" else {}
    original, generator = _build(name, 3, seed=5, **hparams)
    run(original, 9, 0, device)  # into IGBv2's RL phase and past DWA's two warm-up epochs
    state = original.state_dict()  # not copied: it must not alias live state
    generator_state = generator.get_state()
    expected = run(original, 8, 9, device)

    resumed, resumed_generator = _build(name, 3, seed=999, **hparams)  # different init on purpose
    resumed_generator.set_state(generator_state)  # the loop checkpoints its generator itself
    resumed.load_state_dict(_round_trip(state) if serialise else copy.copy(state))
    assert torch.equal(run(resumed, 8, 9, device), expected)
