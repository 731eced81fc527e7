import torch

from mtlrepro.robustness import per_example_norm, scale_to


def test_scaled_perturbation_has_the_requested_relative_norm_per_example():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 8, 8, generator=g) * torch.arange(1, 6).view(5, 1, 1, 1)
    d = torch.randn(5, 1, 8, 8, generator=g)
    delta = scale_to(d, x, 0.3, None, 5)
    assert torch.allclose(per_example_norm(delta, None, 5), 0.3 * per_example_norm(x, None, 5), rtol=1e-5)
    # the direction is kept
    cos = torch.nn.functional.cosine_similarity(delta.flatten(1), d.flatten(1))
    assert torch.allclose(cos, torch.ones(5), atol=1e-5)


def test_absolute_scale_gives_every_example_the_strength_as_its_norm():
    """InfoMTL's (Miyato et al.'s) eps g / ||g||: the norm is the strength, whatever ||x|| is."""
    import pytest

    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 4, generator=g) * torch.arange(1, 6).view(5, 1, 1)
    d = torch.randn(5, 3, 4, generator=g)
    delta = scale_to(d, x, 0.3, None, 5, scale="absolute")
    assert torch.allclose(per_example_norm(delta, None, 5), torch.full((5,), 0.3), rtol=1e-5)
    example = torch.tensor([0, 0, 1, 1, 1])
    grouped = scale_to(d.reshape(5, -1), x.reshape(5, -1), 2.0, example, 2, scale="absolute")
    assert torch.allclose(per_example_norm(grouped, example, 2), torch.full((2,), 2.0), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown perturbation scale"):
        scale_to(d, x, 0.3, None, 5, scale="percent")


def test_grouped_rows_are_scaled_per_graph():
    x = torch.randn(7, 4)
    example = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    delta = scale_to(torch.randn(7, 4), x, 0.5, example, 3)
    assert torch.allclose(per_example_norm(delta, example, 3), 0.5 * per_example_norm(x, example, 3), rtol=1e-5)


def test_fast_gradient_hurts_more_than_random_noise_of_the_same_norm(digits_processed):
    from mtlrepro import params as P
    from mtlrepro.data import get
    from mtlrepro.robustness import perturbation
    from mtlrepro.step import task_losses
    from tests.conftest import CI_PARAMS

    params = P.load(CI_PARAMS)
    spec, config = get("digits-mtl"), params["dataset"]["digits-mtl"]
    tasks = spec.tasks(config)
    torch.manual_seed(0)
    model = spec.build_model(config, tasks).eval()
    inputs, targets = spec.load(config, digits_processed, "test").batch(torch.arange(200))
    g = torch.Generator().manual_seed(0)

    def loss_with(kind):
        delta = perturbation(model, tasks, inputs, targets, inputs, kind, 0.1, g)
        with torch.no_grad():
            h = model.encode_from(inputs + delta, inputs)
            return task_losses(tasks, [head(h) for head in model.heads], targets).sum().item()

    with torch.no_grad():
        clean = task_losses(tasks, model(inputs)[1], targets).sum().item()
    assert loss_with("fgsm") > loss_with("gaussian")
    assert loss_with("fgsm") > clean


def test_a_perturbation_only_touches_what_the_model_allows():
    """Padded token positions get no noise; the real tokens carry the whole relative norm."""
    from mtlrepro.robustness import perturbation

    class Padded(torch.nn.Module):
        def example_index(self, inputs, x0):
            return None

        def perturbable(self, inputs, x0):
            return inputs["mask"].unsqueeze(-1).to(x0.dtype)

    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    x0 = torch.randn(2, 4, 3) * mask.unsqueeze(-1)
    delta = perturbation(Padded(), [], {"mask": mask}, torch.zeros(2, 1), x0, "gaussian", 0.5,
                         torch.Generator().manual_seed(0))
    assert torch.all(delta[mask == 0] == 0)
    assert torch.allclose(per_example_norm(delta, None, 2), 0.5 * per_example_norm(x0, None, 2), rtol=1e-5)
