"""Batched image input pipelines of the image benchmarks, on the device the batch lives on.

Images are stored as uint8 [N, C, H, W]; a pipeline turns a batch of them into the float
network input. Training pipelines draw their random parameters (crop boxes, flips, RandAugment
ops and magnitudes, erasing boxes) from torch's global CPU generator, which the training seed
sets and the resume checkpoints save, so every augmentation is reproducible from the seed and
independent of the device. The drawing is ours; applying them is an `Ops` kernel set:

* `TorchOps`: pure torch, always available (the CPU environment has no torchvision);
* `TorchvisionOps`: torchvision.transforms.v2.functional for the kernels it has with the same
  definition (resized crop, flip, erase, brightness, contrast, solarize, autocontrast), the
  pure-torch ones for the rest. tests/test_image_models.py checks the two agree where both run.

RandAugment follows the protocol's rand-m9-mstd0.5: 2 ops a image, each applied with
probability 0.5, magnitude drawn from N(9, 0.5) clipped to [0, 10] each time, out of 15 ops.
Magnitude 10 means: rotate 30 degrees, shear 0.3, translate 45% of the side, colour / contrast
/ brightness / sharpness factor 1 +- 0.9, posterize to 4 bits, solarize above 0, add 0.43 to
pixels below 0.5 (the AutoAugment ranges); signed ops take a random sign.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .io import MTLReproError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL and torchvision


def _grey(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blend(a: Tensor, b: Tensor, factor: Tensor) -> Tensor:
    return (factor.view(-1, 1, 1, 1) * a + (1 - factor.view(-1, 1, 1, 1)) * b).clamp(0, 1)


class TorchOps:
    """Kernels on float images in [0, 1], [B, C, H, W]; per-example parameters as tensors/lists."""

    name = "torch"

    def resized_crop(self, x: Tensor, boxes: Sequence[tuple[int, int, int, int]], size: int) -> Tensor:
        return torch.cat([F.interpolate(x[i:i + 1, :, t:t + h, l:l + w], size=(size, size), mode="bilinear",
                                        align_corners=False, antialias=True)
                          for i, (t, l, h, w) in enumerate(boxes)])

    def hflip(self, x: Tensor, flip: Tensor) -> Tensor:
        return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)

    def erase(self, x: Tensor, box: tuple[int, int, int, int], value: float) -> Tensor:
        t, l, h, w = box
        out = x.clone()
        out[..., t:t + h, l:l + w] = value
        return out

    def brightness(self, x: Tensor, factor: Tensor) -> Tensor:
        return _blend(x, torch.zeros_like(x), factor)

    def contrast(self, x: Tensor, factor: Tensor) -> Tensor:
        return _blend(x, _grey(x).mean(dim=(-3, -2, -1), keepdim=True), factor)

    def solarize(self, x: Tensor, threshold: Tensor) -> Tensor:
        return torch.where(x >= threshold.view(-1, 1, 1, 1), 1 - x, x)

    def autocontrast(self, x: Tensor) -> Tensor:
        low, high = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
        flat = high == low
        scale = torch.where(flat, torch.ones_like(high), 1.0 / (high - low).clamp_min(1e-12))
        return ((x - torch.where(flat, torch.zeros_like(low), low)) * scale).clamp(0, 1)

    def color(self, x: Tensor, factor: Tensor) -> Tensor:
        return _blend(x, _grey(x).expand_as(x), factor)

    def sharpness(self, x: Tensor, factor: Tensor) -> Tensor:
        """Blend with a 3x3 smoothing ([[1,1,1],[1,5,1],[1,1,1]] / 13); border pixels stay."""
        c = x.shape[1]
        kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
        kernel[1, 1] = 5.0
        kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
        smooth = x.clone()
        smooth[..., 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
        return _blend(x, smooth, factor)

    def posterize(self, x: Tensor, bits: Tensor) -> Tensor:
        step = (2.0 ** (8 - bits.to(x.dtype))).view(-1, 1, 1, 1)
        return torch.floor(torch.round(x * 255) / step) * step / 255

    def equalize(self, x: Tensor) -> Tensor:
        """Per-channel histogram equalisation of the 8-bit values (PIL's ImageOps.equalize)."""
        b, c, h, w = x.shape
        v = torch.round(x * 255).long().view(b * c, h * w)
        hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device).scatter_add_(1, v, torch.ones_like(v))
        last = torch.gather(hist, 1, (v.amax(1, keepdim=True)))  # count of the top occupied bin
        step = (h * w - last) // 255
        lut = (torch.cumsum(hist, 1) - hist + step // 2) // step.clamp_min(1)
        out = torch.gather(lut.clamp(0, 255), 1, v)
        out = torch.where(step == 0, v, out)
        return (out.to(x.dtype) / 255).view(b, c, h, w)

    def affine(self, x: Tensor, inverse: Tensor) -> Tensor:
        """Nearest-neighbour warp, zero fill; `inverse` [B, 2, 3] maps output to input pixel
        coordinates measured from the image centre."""
        b, _, h, w = x.shape
        scale = torch.tensor([w / 2, h / 2], dtype=x.dtype, device=x.device)
        theta = inverse.to(x.dtype).to(x.device).clone()
        theta[:, :, :2] = theta[:, :, :2] * scale.view(1, 1, 2) / scale.view(1, 2, 1)
        theta[:, :, 2] = theta[:, :, 2] / scale.view(1, 2)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


class TorchvisionOps(TorchOps):
    """torchvision's kernels where their definition is the one above (GPU environments)."""

    name = "torchvision"

    def __init__(self):
        from torchvision.transforms.v2 import functional as TF

        self.TF = TF

    def resized_crop(self, x, boxes, size):
        return torch.cat([self.TF.resized_crop(x[i:i + 1], t, l, h, w, [size, size], antialias=True)
                          for i, (t, l, h, w) in enumerate(boxes)])

    def hflip(self, x, flip):
        return torch.where(flip.view(-1, 1, 1, 1).to(x.device), self.TF.horizontal_flip(x), x)

    def erase(self, x, box, value):
        t, l, h, w = box
        return self.TF.erase(x, t, l, h, w, torch.tensor(value, dtype=x.dtype, device=x.device))

    def brightness(self, x, factor):
        return torch.cat([self.TF.adjust_brightness(x[i:i + 1], float(f)) for i, f in enumerate(factor)])

    def contrast(self, x, factor):
        return torch.cat([self.TF.adjust_contrast(x[i:i + 1], float(f)) for i, f in enumerate(factor)])

    def solarize(self, x, threshold):
        return torch.cat([self.TF.solarize(x[i:i + 1], float(t)) for i, t in enumerate(threshold)])

    def autocontrast(self, x):
        return self.TF.autocontrast(x)


def make_ops(backend: str) -> TorchOps:
    """`torch`, `torchvision`, or `auto` (torchvision when it imports, else torch)."""
    if backend == "torch":
        return TorchOps()
    try:
        return TorchvisionOps()
    except Exception as err:  # ImportError, or torchvision built for another torch (RuntimeError)
        if backend == "torchvision":
            raise MTLReproError(f"model.backend is 'torchvision' but torchvision cannot be imported "
                                f"({type(err).__name__}: {err}); use backend torch or auto") from None
        return TorchOps()


# ---------------------------------------------------------------- RandAugment

SIGNED = {"rotate", "shear_x", "shear_y", "translate_x", "translate_y", "color", "contrast", "brightness",
          "sharpness"}
RAND_OPS = ("auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add",
            "color", "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")


def _affine_inverse(kind: str, amount: Tensor, size: int) -> Tensor:
    """Inverse maps [n, 2, 3] (output -> input, centred pixel coordinates) of one geometric op."""
    n = amount.shape[0]
    m = torch.eye(3).repeat(n, 1, 1)
    if kind == "rotate":
        rad = amount * math.pi / 180
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = rad.cos(), -rad.sin(), rad.sin(), rad.cos()
    elif kind == "shear_x":
        m[:, 0, 1] = amount
    elif kind == "shear_y":
        m[:, 1, 0] = amount
    elif kind == "translate_x":
        m[:, 0, 2] = amount * size
    else:  # translate_y
        m[:, 1, 2] = amount * size
    return torch.linalg.inv(m)[:, :2]


def apply_rand_op(ops: TorchOps, kind: str, x: Tensor, level: Tensor) -> Tensor:
    """One RandAugment op at `level` in [-1, 1] per example (sign already drawn)."""
    if kind == "auto_contrast":
        return ops.autocontrast(x)
    if kind == "equalize":
        return ops.equalize(x)
    if kind == "invert":
        return 1 - x
    if kind == "posterize":
        return ops.posterize(x, 8 - torch.round(4 * level.abs()))
    if kind == "solarize":
        return ops.solarize(x, 1 - level.abs())
    if kind == "solarize_add":
        return torch.where(x < 0.5, (x + 0.43 * level.abs().view(-1, 1, 1, 1).to(x.device)).clamp(0, 1), x)
    if kind in ("color", "contrast", "brightness", "sharpness"):
        return getattr(ops, kind)(x, (1 + 0.9 * level).to(x.device))
    scale = {"rotate": 30.0, "shear_x": 0.3, "shear_y": 0.3, "translate_x": 0.45, "translate_y": 0.45}[kind]
    return ops.affine(x, _affine_inverse(kind, scale * level, x.shape[-1]))


def rand_augment(ops: TorchOps, x: Tensor, num_ops: int = 2, magnitude: float = 9.0,
                 magnitude_std: float = 0.5, prob: float = 0.5) -> Tensor:
    b = x.shape[0]
    for _ in range(num_ops):
        choice = torch.randint(len(RAND_OPS), (b,))
        applied = torch.rand(b) < prob
        level = (magnitude + magnitude_std * torch.randn(b)).clamp(0, 10) / 10
        sign = torch.where(torch.rand(b) < 0.5, -1.0, 1.0)
        out = x.clone()
        for k, kind in enumerate(RAND_OPS):
            rows = torch.nonzero((choice == k) & applied).flatten()
            if len(rows):
                lv = level[rows] * (sign[rows] if kind in SIGNED else 1.0)
                out[rows.to(x.device)] = apply_rand_op(ops, kind, x[rows.to(x.device)], lv)
        x = out
    return x


# ---------------------------------------------------------------- parameter drawing and pipelines


def random_resized_boxes(b: int, h: int, w: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """RandomResizedCrop's boxes: area share ~ U(scale), log aspect ~ U(log ratio), 10 tries,
    then the centred crop of the clamped ratio."""
    boxes = []
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(b):
        for _ in range(10):
            area = h * w * float(torch.empty(1).uniform_(*scale))
            aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
            cw, ch = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                t, l = int(torch.randint(0, h - ch + 1, (1,))), int(torch.randint(0, w - cw + 1, (1,)))
                boxes.append((t, l, ch, cw))
                break
        else:
            cw, ch = (w, min(h, int(round(w / ratio[0])))) if w / h < ratio[0] else \
                ((min(w, int(round(h * ratio[1]))), h) if w / h > ratio[1] else (w, h))
            boxes.append(((h - ch) // 2, (w - cw) // 2, ch, cw))
    return boxes


def erasing_box(h: int, w: int, scale=(0.02, 0.33), ratio=(0.3, 3.3)):
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        area = h * w * float(torch.empty(1).uniform_(*scale))
        aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
        eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if eh < h and ew < w:
            return int(torch.randint(0, h - eh + 1, (1,))), int(torch.randint(0, w - ew + 1, (1,))), eh, ew
    return None


@dataclass
class Pipeline:
    """uint8 [B, C, H, W] -> normalised float [B, C', crop, crop].

    crop: output side (None: the stored size); train_crop: "random" (RandomCrop), "resized"
    (RandomResizedCrop) or "none"; eval batches take the centre crop."""

    mean: Sequence[float]
    std: Sequence[float]
    train: bool = False
    crop: int | None = None
    train_crop: str = "none"
    hflip: bool = False
    rand_augment: bool = False
    erasing: float = 0.0
    channels: int | None = None  # replicate grey to this many channels (ImageNet backbones)
    ops: TorchOps | None = None

    def __call__(self, images: Tensor) -> Tensor:
        ops = self.ops or TorchOps()
        x = images.float() / 255.0
        b, _, h, w = x.shape
        crop = self.crop or h
        if crop > min(h, w):
            raise MTLReproError(f"model.crop {crop} is larger than the stored images ({h}x{w})")
        if self.train and self.train_crop == "resized":
            x = ops.resized_crop(x, random_resized_boxes(b, h, w), crop)
        elif self.train and self.train_crop == "random":
            tops, lefts = torch.randint(0, h - crop + 1, (b,)), torch.randint(0, w - crop + 1, (b,))
            x = torch.stack([x[i, :, t:t + crop, l:l + crop] for i, (t, l) in enumerate(zip(tops.tolist(), lefts.tolist()))])
        elif crop != h or crop != w:
            t, l = (h - crop) // 2, (w - crop) // 2
            x = x[:, :, t:t + crop, l:l + crop]
        if self.train and self.hflip:
            x = ops.hflip(x, torch.rand(b) < 0.5)
        if self.train and self.rand_augment:
            x = rand_augment(ops, x)
        if self.channels and x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
        if self.train and self.erasing > 0:
            x = self._erase(ops, x)
        return x

    def _erase(self, ops: TorchOps, x: Tensor) -> Tensor:
        rows = []
        for i, hit in enumerate((torch.rand(x.shape[0]) < self.erasing).tolist()):
            box = erasing_box(x.shape[-2], x.shape[-1]) if hit else None
            rows.append(ops.erase(x[i:i + 1], box, 0.0) if box is not None else x[i:i + 1])
        return torch.cat(rows)
