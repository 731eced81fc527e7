"""The CIFAR-MTL network of BayesAgg-MTL: 3 x (conv + ELU + max-pool), then batch-norm."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .base import MTLModel


class SingletonSafeBatchNorm1d(nn.BatchNorm1d):
    """Batch norm that also takes a training batch of one example (a split's last batch can be
    one long): one example has no batch variance, so it is normalised with the running
    statistics, which it leaves unchanged, as in eval mode. Every larger batch is normalised as
    by nn.BatchNorm1d, so the training of every run that worked before is unchanged (dropping
    the singleton batch instead would change the runs of the models without batch norm)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=False, eps=self.eps)
        return super().forward(x)


class ConvNet(MTLModel):
    def __init__(self, tasks, in_channels: int = 1, channels: int = 64, kernel: int = 3,
                 pool: int = 2, image_size: int = 8, padding_mode: str = "zeros"):
        size = image_size
        for _ in range(3):
            size = size // pool
        if size < 1:
            raise ValueError(f"image size {image_size} is too small for 3 poolings of {pool}")
        super().__init__(channels * size * size, tasks)
        layers = []
        for i in range(3):
            layers += [nn.Conv2d(in_channels if i == 0 else channels, channels, kernel, padding=kernel // 2,
                                 padding_mode=padding_mode),
                       nn.ELU(), nn.MaxPool2d(pool)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.norm = SingletonSafeBatchNorm1d(self.rep_dim)

    def embed(self, inputs: Tensor) -> Tensor:
        return inputs

    def encode_from(self, x0: Tensor, inputs) -> Tensor:
        return self.norm(self.features(x0))
