"""The image benchmarks' models and input pipelines: torchvision-compatible ResNets, the CIFAR-MTL
network, the augmentation kernels against PIL's definitions, and the pure-torch path against
torchvision's (skipped only where torchvision cannot be imported, as on the CPU environment)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlrepro.augment import Pipeline, TorchOps, make_ops
from mtlrepro.data.base import Task
from mtlrepro.io import MTLReproError
from mtlrepro.models.resnet import ResNet, ResNetMTL


def _torchvision():
    try:
        import torchvision
    except Exception as err:  # ImportError, or a CUDA-only build beside the CPU torch
        pytest.skip(f"torchvision cannot be imported here ({type(err).__name__})")
    return torchvision


@pytest.mark.parametrize("depth, n_params", [(18, 11_689_512), (34, 21_797_672)])
def test_resnet_has_torchvisions_layout(depth, n_params):
    model = ResNet(depth)
    assert sum(p.numel() for p in model.parameters()) == n_params  # torchvision's published counts
    keys = set(model.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.num_batches_tracked", "layer4.1.bn2.bias", "fc.weight", "fc.bias"} <= keys
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


def test_torch_and_torchvision_resnets_agree():
    torchvision = _torchvision()
    for depth in (18, 34):
        reference = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
        ours = ResNet(depth).eval()
        assert set(ours.state_dict()) == set(reference.state_dict())
        ours.load_state_dict(reference.state_dict())
        x = torch.randn(2, 3, 64, 64)
        assert torch.allclose(ours(x), reference(x), atol=1e-5)


def test_torch_and_torchvision_transform_kernels_agree():
    _torchvision()
    ours, theirs = TorchOps(), make_ops("torchvision")
    assert theirs.name == "torchvision"
    x = torch.rand(3, 3, 24, 24)
    factor = torch.tensor([0.3, 1.0, 1.7])
    boxes = [(0, 0, 24, 24), (3, 5, 10, 14), (7, 2, 17, 9)]
    assert torch.allclose(ours.resized_crop(x, boxes, 16), theirs.resized_crop(x, boxes, 16), atol=1e-5)
    flip = torch.tensor([True, False, True])
    assert torch.equal(ours.hflip(x, flip), theirs.hflip(x, flip))
    assert torch.equal(ours.erase(x, (2, 3, 5, 7), 0.0), theirs.erase(x, (2, 3, 5, 7), 0.0))
    for name in ("brightness", "contrast"):
        assert torch.allclose(getattr(ours, name)(x, factor), getattr(theirs, name)(x, factor), atol=1e-6), name
    assert torch.equal(ours.solarize(x, torch.tensor([0.2, 0.5, 0.9])), theirs.solarize(x, torch.tensor([0.2, 0.5, 0.9])))
    assert torch.allclose(ours.autocontrast(x), theirs.autocontrast(x), atol=1e-6)


def test_backend_torchvision_fails_clearly_without_it():
    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(MTLReproError, match="torchvision cannot be imported"):
            make_ops("torchvision")
        assert make_ops("auto").name == "torch"
    else:
        pytest.skip("torchvision imports here")


def test_imagenet_weights_load_from_a_local_file(tmp_path):
    source = ResNet(34)
    torch.save(source.state_dict(), tmp_path / "resnet34.pth")
    model = ResNetMTL([Task("a", "binary", "auc")], depth=34, backend="torch", weights=str(tmp_path / "resnet34.pth"))
    assert torch.equal(model.backbone.layer3[5].conv2.weight,
                       source.layer3[5].conv2.weight)
    assert "backbone.fc.weight" not in model.state_dict()  # the ImageNet head is replaced by FC 256 + ELU
    h, outs = model(torch.randn(2, 3, 32, 32))
    assert h.shape == (2, 256) and outs[0].shape == (2, 1) and (h > -1).all()  # ELU's range
    torch.save(ResNet(18).state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(MTLReproError, match="resnet18.pth does not fit this ResNet"):
        ResNetMTL([Task("a", "binary", "auc")], depth=34, backend="torch", weights=str(tmp_path / "resnet18.pth"))


def test_cifar_mtl_network_is_the_papers():
    from mtlrepro.data import get

    spec = get("cifar-mtl")
    model = spec.build_model({"model": {"channels": 160, "kernel": 3}}, spec.tasks({}))
    assert model.rep_dim == 160 and len(model.heads) == 20  # 32 -> 10 -> 3 -> 1 after max-pool 3
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.padding_mode for c in convs] == ["reflect"] * 3 and [c.out_channels for c in convs] == [160] * 3


def _uint8_image(seed=0, c=3, side=20):
    return torch.from_numpy(np.random.default_rng(seed).integers(30, 200, (1, c, side, side), dtype=np.uint8))


def _pil(image: torch.Tensor):
    from PIL import Image

    return Image.fromarray(image[0].permute(1, 2, 0).numpy())


def _back(pil) -> torch.Tensor:
    return torch.from_numpy(np.array(pil)).permute(2, 0, 1)[None].float() / 255


def test_colour_kernels_match_pil():
    from PIL import ImageOps

    ops, u8 = TorchOps(), _uint8_image()
    x = u8.float() / 255
    assert torch.allclose(ops.equalize(x), _back(ImageOps.equalize(_pil(u8))), atol=1e-6)
    assert torch.allclose(ops.posterize(x, torch.tensor([4.0])), _back(ImageOps.posterize(_pil(u8), 4)), atol=1e-6)
    assert torch.allclose(ops.solarize(x, torch.tensor([128 / 255])), _back(ImageOps.solarize(_pil(u8), 128)), atol=1e-6)
    assert torch.allclose(ops.autocontrast(x), _back(ImageOps.autocontrast(_pil(u8))), atol=1.01 / 255)


def test_geometric_kernels():
    ops = TorchOps()
    x = torch.rand(2, 1, 16, 16)
    shift = torch.tensor([[1.0, 0.0, -4.0], [0.0, 1.0, 0.0]]).repeat(2, 1, 1)  # output x reads input x - 4
    out = ops.affine(x, shift)
    assert torch.equal(out[..., 4:], x[..., :-4]) and (out[..., :4] == 0).all()
    quarter = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]).repeat(2, 1, 1)
    turned = ops.affine(x, quarter)
    assert any(torch.equal(turned, torch.rot90(x, k, (-2, -1))) for k in (1, -1))
    assert torch.equal(ops.hflip(x, torch.tensor([True, False])), torch.stack([x[0].flip(-1), x[1]]))


def test_pipelines_crop_normalise_and_are_seeded():
    images = _uint8_image(1, c=1, side=20).repeat(4, 1, 1, 1)
    eval_pipe = Pipeline(mean=(0.5,) * 3, std=(0.25,) * 3, crop=16, channels=3)
    out = eval_pipe(images)
    centre = images[:, :, 2:18, 2:18].float() / 255
    assert out.shape == (4, 3, 16, 16) and torch.allclose(out[:, 1:2], (centre - 0.5) / 0.25)
    train_pipe = Pipeline(mean=(0.5,) * 3, std=(0.25,) * 3, train=True, crop=16, train_crop="resized",
                          hflip=True, rand_augment=True, erasing=1.0, channels=3)
    torch.manual_seed(3)
    a = train_pipe(images)
    torch.manual_seed(3)
    assert torch.equal(a, train_pipe(images)) and a.shape == (4, 3, 16, 16)
    assert not torch.equal(a[0], a[1])  # each image draws its own augmentation
    assert ((a == 0).all(1).flatten(1).sum(1) > 0).all()  # erasing (p = 1) zeroed a box in every image
    with pytest.raises(MTLReproError, match="model.crop 32 is larger than the stored images"):
        Pipeline(mean=(0.5,), std=(0.5,), crop=32)(images)
