"""BN-Inception (Inception v2): GoogLeNet with batch normalisation and the 5×5 convolutions factorised.

Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing Internal
Covariate Shift", ICML 2015 (arXiv:1502.03167), Section 4.2 and the Appendix (Figure 5, the
network's table).

The changes from GoogLeNet (Appendix):

- batch normalisation after every convolution, before its ReLU;
- every 5×5 convolution replaced by two stacked 3×3 convolutions ("double #3×3"), which sees the
  same 5×5 window with 28% fewer multiply-adds per output (9 + 9 = 18 against 25 weights);
- three Inception modules at 28×28 instead of two, and average or max pooling in the pool branch as
  the table says;
- no max pool between the stages: modules 3c and 4e reduce the grid themselves with stride-2
  convolutions and a stride-2 max pool whose output passes straight through ("max + pass through");
- no auxiliary classifiers and no dropout (Section 4.2.1: batch norm makes dropout unnecessary).

The table's "output size" column says 576 channels after 4c and 4d and 1024 after 4e, but its
filter columns add up to 160 + 160 + 160 + 128 = 608 (4c), 96 + 192 + 192 + 128 = 608 (4d) and
192 + 256 + 608 = 1056 (4e). We build what the filter columns say, as the released Caffe model
does; the output sizes then follow from the layers.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import BasicConv2d

__all__ = ["BNInception", "InceptionModule", "ReductionModule", "bn_inception"]

_EPS = 1e-5  # the released model's batch-norm epsilon (Caffe's default)


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0) -> BasicConv2d:
    return BasicConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, eps=_EPS)


class InceptionModule(nn.Module):
    """An Inception module of BN-Inception (the table's rows 3a, 3b, 4a–4d, 5a, 5b).

    Four branches, concatenated in the order of the table's columns:

    1. #1×1:                                  1×1 convolution
    2. #3×3 reduce → #3×3:                    1×1, then 3×3
    3. double #3×3 reduce → double #3×3:      1×1, then two 3×3 (the factorised 5×5)
    4. pool + proj:                           3×3 average or max pooling (stride 1), then 1×1
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, dbl3x3red: int, dbl3x3: int,
                 pool: str, pool_proj: int):
        super().__init__()
        self.branch1x1 = _conv(in_channels, ch1x1, 1)
        self.branch3x3 = nn.Sequential(
            _conv(in_channels, ch3x3red, 1),
            _conv(ch3x3red, ch3x3, 3, padding=1),
        )
        self.branch3x3dbl = nn.Sequential(
            _conv(in_channels, dbl3x3red, 1),
            _conv(dbl3x3red, dbl3x3, 3, padding=1),
            _conv(dbl3x3, dbl3x3, 3, padding=1),
        )
        pooling = nn.AvgPool2d(3, stride=1, padding=1) if pool == "avg" else nn.MaxPool2d(3, stride=1, padding=1)
        self.branch_pool = nn.Sequential(pooling, _conv(in_channels, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class ReductionModule(nn.Module):
    """A stride-2 Inception module of BN-Inception (rows 3c and 4e: "#1×1 = 0", "max + pass through").

    Halves the grid and widens the channels in one step, with no pooling layer between stages:

    1. #3×3 reduce → #3×3 /2:                          1×1, then 3×3 with stride 2
    2. double #3×3 reduce → double #3×3 (last /2):     1×1, 3×3, then 3×3 with stride 2
    3. max pool /2, passed through without projection
    """

    def __init__(self, in_channels: int, ch3x3red: int, ch3x3: int, dbl3x3red: int, dbl3x3: int):
        super().__init__()
        self.branch3x3 = nn.Sequential(
            _conv(in_channels, ch3x3red, 1),
            _conv(ch3x3red, ch3x3, 3, stride=2, padding=1),
        )
        self.branch3x3dbl = nn.Sequential(
            _conv(in_channels, dbl3x3red, 1),
            _conv(dbl3x3red, dbl3x3, 3, padding=1),
            _conv(dbl3x3, dbl3x3, 3, stride=2, padding=1),
        )
        # Padded like the stride-2 convolutions, so that the three outputs line up at any input size.
        self.branch_pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class BNInception(nn.Module):
    """BN-Inception after the Batch Normalization paper's Figure 5 (224×224 input).

    Module names follow torchvision's `googlenet` (conv1, maxpool1, conv2, conv3, maxpool2,
    inception3a, …, fc) so the two can be compared stage by stage.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        # Stem, as GoogLeNet's but with batch norm and without local response normalisation.
        self.conv1 = _conv(3, 64, 7, stride=2, padding=3)            # 112×112×64
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)    # 56×56×64
        self.conv2 = _conv(64, 64, 1)                                # the "#3×3 reduce" of the conv row
        self.conv3 = _conv(64, 192, 3, padding=1)                    # 56×56×192
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)    # 28×28×192

        # The table's rows: in, #1×1, #3×3 reduce, #3×3, double #3×3 reduce, double #3×3, pool, proj.
        self.inception3a = InceptionModule(192, 64, 64, 64, 64, 96, "avg", 32)        # 28×28×256
        self.inception3b = InceptionModule(256, 64, 64, 96, 64, 96, "avg", 64)        # 28×28×320
        self.inception3c = ReductionModule(320, 128, 160, 64, 96)                     # 14×14×576
        self.inception4a = InceptionModule(576, 224, 64, 96, 96, 128, "avg", 128)     # 14×14×576
        self.inception4b = InceptionModule(576, 192, 96, 128, 96, 128, "avg", 128)    # 14×14×576
        self.inception4c = InceptionModule(576, 160, 128, 160, 128, 160, "avg", 128)  # 14×14×608
        self.inception4d = InceptionModule(608, 96, 128, 192, 160, 192, "avg", 128)   # 14×14×608
        self.inception4e = ReductionModule(608, 128, 192, 192, 256)                   # 7×7×1056
        self.inception5a = InceptionModule(1056, 352, 192, 320, 160, 224, "avg", 128)  # 7×7×1024
        self.inception5b = InceptionModule(1024, 352, 192, 320, 192, 224, "max", 128)  # 7×7×1024

        # "avg pool 7×7/1": a global average at 224×224 (adaptive, so other sizes work too).
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.inception3a(x)
        x = self.inception3b(x)
        x = self.inception3c(x)
        x = self.inception4a(x)
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        x = self.inception4e(x)
        x = self.inception5a(x)
        x = self.inception5b(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def bn_inception(num_classes: int = 1000) -> BNInception:
    """BN-Inception (Inception v2) with random weights."""
    return BNInception(num_classes=num_classes)
