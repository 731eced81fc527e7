"""ResNet-18/34 backbones (He et al. 2016) for UTKFace and ChestX-ray14, and their MTL model.

`build_backbone(depth, backend)` returns torchvision's resnet18/resnet34 where torchvision imports
(`backend: torchvision`, or `auto` on GPU environments), else `ResNet` below: the same layers under
the same names (conv1, bn1, layer1.0.conv1, ..., layer4.1.downsample.0, fc) and the same
initialisation rule, so one state_dict loads into either and torchvision's published ImageNet
weights (resnet34-*.pth) load into both. tests/test_image_models.py checks the two give the same
outputs where torchvision imports.

`ResNetMTL` is the protocol's model: the backbone without its fc, then FC 256 + ELU as the shared
representation h, and the task heads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from ..io import MTLReproError
from .base import MTLModel

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
REP_DIM = 256


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A basic-block ResNet with an ImageNet stem (7x7/2 conv, 3x3/2 max-pool) and a 1000-way fc."""

    def __init__(self, depth: int = 18, num_classes: int = 1000):
        super().__init__()
        if depth not in BLOCKS:
            raise MTLReproError(f"model.backbone: ResNet depth {depth} not supported; known: {sorted(BLOCKS)}")
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), BLOCKS[depth])):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(inplanes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's rule: He-normal (fan_out) convs, unit BN
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_backbone(depth: int, backend: str = "auto") -> nn.Module:
    """ResNet-<depth> from torchvision (backend torchvision, or auto when it imports) or ours."""
    if backend not in ("auto", "torch", "torchvision"):
        raise MTLReproError(f"model.backend must be auto, torch or torchvision, got {backend!r}")
    if backend != "torch":
        try:
            import torchvision
        except Exception as err:  # ImportError, or a CUDA-only build beside the CPU torch
            if backend == "torchvision":
                raise MTLReproError(f"model.backend is 'torchvision' but torchvision cannot be imported "
                                    f"({type(err).__name__}: {err}); use backend torch or auto") from None
        else:
            return getattr(torchvision.models, f"resnet{depth}")(weights=None)
    return ResNet(depth)


def load_imagenet_weights(backbone: nn.Module, path: str | Path) -> None:
    """torchvision's ImageNet state_dict from a local file (weights_only: tensors, no code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MTLReproError(f"model.weights: no such file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise MTLReproError(f"model.weights: cannot read {path} as a torch state_dict: {err}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MTLReproError(f"model.weights: {path} holds a {type(state).__name__}, not a state_dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the 1000-way head is dropped
    expected = {k for k in backbone.state_dict() if not k.startswith("fc.")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise MTLReproError(f"model.weights: {path} does not fit this ResNet: missing {missing[:5]} "
                            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})")
    try:
        backbone.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch: another depth
        raise MTLReproError(f"model.weights: {path} does not fit this ResNet: {err}") from None


class ResNetMTL(MTLModel):
    def __init__(self, tasks, depth: int = 18, backend: str = "auto", weights: str | None = None):
        super().__init__(REP_DIM, tasks)
        self.backbone = build_backbone(depth, backend)
        if weights:
            load_imagenet_weights(self.backbone, weights)
        self.backbone.fc = nn.Identity()
        self.project = nn.Sequential(nn.Linear(512, REP_DIM), nn.ELU())

    def embed(self, inputs: Tensor) -> Tensor:
        return inputs

    def encode_from(self, x0: Tensor, inputs) -> Tensor:
        return self.project(self.backbone(x0))


def build_resnet_mtl(model_config: dict, tasks: Sequence) -> ResNetMTL:
    depth = int(str(model_config["backbone"]).removeprefix("resnet"))
    return ResNetMTL(tasks, depth=depth, backend=model_config.get("backend", "auto"),
                     weights=model_config.get("weights"))
