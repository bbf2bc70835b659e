"""A small Inception v1 for the drawn-shapes demo task: 64×64 images, six classes.

GoogLeNet's design (Szegedy et al. 2014) at the scale of the task: a stem, Inception modules of four
parallel branches concatenated along the channels — 1×1; 1×1 → 3×3; 1×1 → 5×5; 3×3 max pool → 1×1 —
with max pooling between the stages, global average pooling and one linear layer. Module names follow
torchvision's `googlenet` (conv1, maxpool1, …, inception3a, …, fc), so that the explorer reads its blocks
and branches as it reads GoogLeNet's. Every convolution is followed by batch normalisation and a ReLU (as
in torchvision's GoogLeNet), which lets it train in a few minutes on a CPU.

A 64×64 input gives the grid 32 → 16 → 8 → 4 (GoogLeNet's stem and stages, one stage fewer):

    conv1 3×3/2, maxpool1 3×3/2      32×32×32 → 16×16×32
    conv2 1×1, conv3 3×3             16×16×64
    inception3a, 3b                  16×16×96, 16×16×128;  maxpool3 3×3/2 → 8×8
    inception4a, 4b                  8×8×160, 8×8×192;     maxpool4 3×3/2 → 4×4
    inception5a                      4×4×256;  global average pool, dropout, fc → 6
"""

from __future__ import annotations

import torch
import torch.nn as nn

from inception_models.layers import BasicConv2d

__all__ = ["Inception", "ShapesInception", "shapes_inception"]


class Inception(nn.Module):
    """GoogLeNet's Inception module with dimension reductions (Figure 2b of the paper), batch-normalised.

    Branches, in concatenation order: #1×1; #3×3 reduce → #3×3; #5×5 reduce → #5×5; 3×3 max pool →
    pool proj.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=5, padding=2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class ShapesInception(nn.Module):
    """The demo network: stem, five Inception modules in three stages, global average pooling, a linear head."""

    def __init__(self, num_classes: int = 6, dropout: float = 0.2):
        super().__init__()
        self.conv1 = BasicConv2d(3, 32, kernel_size=3, stride=2, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(32, 32, kernel_size=1)
        self.conv3 = BasicConv2d(32, 64, kernel_size=3, padding=1)

        # in, #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj (the columns of GoogLeNet's Table 1)
        self.inception3a = Inception(64, 24, 32, 48, 8, 12, 12)
        self.inception3b = Inception(96, 32, 32, 48, 12, 24, 24)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = Inception(128, 48, 48, 64, 12, 24, 24)
        self.inception4b = Inception(160, 56, 56, 72, 16, 32, 32)
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception5a = Inception(192, 80, 64, 96, 16, 40, 40)

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.conv1(x))           # 32×32×32 → 16×16×32
        x = self.conv3(self.conv2(x))              # 16×16×64
        x = self.inception3b(self.inception3a(x))  # 16×16×128
        x = self.maxpool3(x)                       # 8×8×128
        x = self.inception4b(self.inception4a(x))  # 8×8×192
        x = self.maxpool4(x)                       # 4×4×192
        x = self.inception5a(x)                    # 4×4×256
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


def shapes_inception(num_classes: int = 6, **kwargs) -> ShapesInception:
    """The demo Inception for the six drawn shapes (random weights; the trained ones ship with the explorer)."""
    return ShapesInception(num_classes=num_classes, **kwargs)
