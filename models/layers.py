"""The basic layer of the batch-normalised Inception networks: convolution → batch norm → ReLU."""

from __future__ import annotations

import torch
import torch.nn as nn


class BasicConv2d(nn.Module):
    """A convolution without bias, batch normalisation and a ReLU.

    The convolution has no bias because batch norm's shift (`bn.bias`) replaces it (Ioffe &
    Szegedy 2015, Section 3.2). The attribute names `conv` and `bn` are those of timm's
    `ConvNormAct`, so timm's state dicts load; `eps=1e-3` is the value the TensorFlow-trained
    Inception v4 / Inception-ResNet weights were made with.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0, eps: float = 1e-3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))
