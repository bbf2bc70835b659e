"""Inception-v4: the pure Inception network (no residual connections).

Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", AAAI 2017 (arXiv:1602.07261), Section 3.1 and Figures 3–9.

Every convolution is a `BasicConv2d` (conv → batch norm → ReLU). Convolutions the paper marks "V"
are unpadded ("valid"); the others keep the grid size.

Parameter names follow timm's `inception_v4` (features.0 … features.21, last_linear), so the
state dict of timm's model — and the weight files made for it — load into this one unchanged.
Where timm (after the released TensorFlow model) differs from the paper's figures, the weights
win and the docstring says so.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import BasicConv2d

__all__ = ["InceptionV4", "inception_v4", "ReductionA"]


# -- the stem (Figure 3): 299×299×3 → 35×35×384 ----------------------------------------------------


class Mixed3a(nn.Module):
    """Stem, first filter concatenation (Figure 3): 147×147×64 → 73×73×160.

    3×3 max pool /2 ‖ 3×3 conv /2 (96): pooling and a strided convolution side by side, so the grid
    shrinks without a representational bottleneck.
    """

    def __init__(self):
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, stride=2)
        self.conv = BasicConv2d(64, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.maxpool(x), self.conv(x)], 1)


class Mixed4a(nn.Module):
    """Stem, second filter concatenation (Figure 3): 73×73×160 → 71×71×192.

    Left: 1×1 (64) → 3×3 V (96). Right: 1×1 (64) → 1×7 (64) → 7×1 (64) → 3×3 V (96).
    (The figure draws 7×1 before 1×7; the released weights apply 1×7 first.)
    """

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(
            BasicConv2d(160, 64, kernel_size=1),
            BasicConv2d(64, 96, kernel_size=3),
        )
        self.branch1 = nn.Sequential(
            BasicConv2d(160, 64, kernel_size=1),
            BasicConv2d(64, 64, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(64, 64, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(64, 96, kernel_size=3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x)], 1)


class Mixed5a(nn.Module):
    """Stem, third filter concatenation (Figure 3): 71×71×192 → 35×35×384.

    3×3 conv /2 V (192) ‖ max pool /2 V.
    """

    def __init__(self):
        super().__init__()
        self.conv = BasicConv2d(192, 192, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.maxpool(x)], 1)


# -- the Inception and reduction modules -----------------------------------------------------------


class InceptionA(nn.Module):
    """Inception-A, the 35×35 module (Figure 4): 384 → 384 channels.

    1×1 (96) ‖ 1×1 (64) → 3×3 (96) ‖ 1×1 (64) → 3×3 (96) → 3×3 (96) ‖ avg pool → 1×1 (96).
    The third branch is Inception v2's factorisation of a 5×5 into two stacked 3×3.
    """

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(384, 96, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(384, 64, kernel_size=1),
            BasicConv2d(64, 96, kernel_size=3, padding=1),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(384, 64, kernel_size=1),
            BasicConv2d(64, 96, kernel_size=3, padding=1),
            BasicConv2d(96, 96, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            BasicConv2d(384, 96, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReductionA(nn.Module):
    """Reduction-A, 35×35 → 17×17 (Figure 7), shared by all three networks of the paper.

    3×3 conv /2 V (n) ‖ 1×1 (k) → 3×3 (l) → 3×3 /2 V (m) ‖ 3×3 max pool /2 V.
    The filter counts k, l, m, n are the paper's Table 1:

    ====================  ===  ===  ===  ===
    network                k    l    m    n
    ====================  ===  ===  ===  ===
    Inception-v4          192  224  256  384
    Inception-ResNet-v1   192  192  256  384
    Inception-ResNet-v2   256  256  384  384
    ====================  ===  ===  ===  ===
    """

    def __init__(self, in_channels: int = 384, k: int = 192, l: int = 224, m: int = 256, n: int = 384):  # noqa: E741
        super().__init__()
        self.branch0 = BasicConv2d(in_channels, n, kernel_size=3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(in_channels, k, kernel_size=1),
            BasicConv2d(k, l, kernel_size=3, padding=1),
            BasicConv2d(l, m, kernel_size=3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionB(nn.Module):
    """Inception-B, the 17×17 module (Figure 5): 1024 → 1024 channels.

    1×1 (384) ‖ 1×1 (192) → 1×7 (224) → 7×1 (256) ‖ 1×1 (192) → 7×1 (192) → 1×7 (224) → 7×1 (224)
    → 1×7 (256) ‖ avg pool → 1×1 (128). The 7×7 receptive fields are factorised into 1×7 and 7×1
    (Inception v3's asymmetric factorisation).
    """

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(1024, 384, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1024, 192, kernel_size=1),
            BasicConv2d(192, 224, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(224, 256, kernel_size=(7, 1), padding=(3, 0)),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(1024, 192, kernel_size=1),
            BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(192, 224, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(224, 224, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(224, 256, kernel_size=(1, 7), padding=(0, 3)),
        )
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            BasicConv2d(1024, 128, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReductionB(nn.Module):
    """Reduction-B of Inception-v4, 17×17 → 8×8 (Figure 8): 1024 → 1536 channels.

    1×1 (192) → 3×3 /2 V (192) ‖ 1×1 (256) → 1×7 (256) → 7×1 (320) → 3×3 /2 V (320) ‖ 3×3 max pool /2 V.
    """

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(
            BasicConv2d(1024, 192, kernel_size=1),
            BasicConv2d(192, 192, kernel_size=3, stride=2),
        )
        self.branch1 = nn.Sequential(
            BasicConv2d(1024, 256, kernel_size=1),
            BasicConv2d(256, 256, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(256, 320, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(320, 320, kernel_size=3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class InceptionC(nn.Module):
    """Inception-C, the 8×8 module (Figure 6): 1536 → 1536 channels.

    1×1 (256) ‖ 1×1 (384) → (1×3 (256) ‖ 3×1 (256)) ‖ 1×1 (384) → 3×1 (448) → 1×3 (512) →
    (1×3 (256) ‖ 3×1 (256)) ‖ avg pool → 1×1 (256). On the coarsest grid the branches split into
    side-by-side 1×3 and 3×1 convolutions, which widens the output (Inception v3's Figure 7).
    (The figure puts 1×3 before 3×1 in the third branch; the released weights apply 3×1 first.)
    """

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(1536, 256, kernel_size=1)

        self.branch1_0 = BasicConv2d(1536, 384, kernel_size=1)
        self.branch1_1a = BasicConv2d(384, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch1_1b = BasicConv2d(384, 256, kernel_size=(3, 1), padding=(1, 0))

        self.branch2_0 = BasicConv2d(1536, 384, kernel_size=1)
        self.branch2_1 = BasicConv2d(384, 448, kernel_size=(3, 1), padding=(1, 0))
        self.branch2_2 = BasicConv2d(448, 512, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3a = BasicConv2d(512, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3b = BasicConv2d(512, 256, kernel_size=(3, 1), padding=(1, 0))

        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            BasicConv2d(1536, 256, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.branch0(x)

        x1 = self.branch1_0(x)
        x1 = torch.cat([self.branch1_1a(x1), self.branch1_1b(x1)], 1)

        x2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        x2 = torch.cat([self.branch2_3a(x2), self.branch2_3b(x2)], 1)

        x3 = self.branch3(x)
        return torch.cat([x0, x1, x2, x3], 1)


# -- the network (Figure 9) ------------------------------------------------------------------------


class InceptionV4(nn.Module):
    """Inception-v4 (Figure 9): stem, 4 × Inception-A, Reduction-A, 7 × Inception-B, Reduction-B,
    3 × Inception-C, average pooling, dropout (keep 0.8) and the classifier.

    ==========  ===================  ===================
    features    module               output at 299×299
    ==========  ===================  ===================
    0           3×3 conv /2 V (32)   149×149×32
    1           3×3 conv V (32)      147×147×32
    2           3×3 conv (64)        147×147×64
    3–5         Mixed3a/4a/5a        73×73×160, 71×71×192, 35×35×384
    6–9         Inception-A          35×35×384
    10          Reduction-A          17×17×1024
    11–17       Inception-B          17×17×1024
    18          Reduction-B          8×8×1536
    19–21       Inception-C          8×8×1536
    ==========  ===================  ===================
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.features = nn.Sequential(
            BasicConv2d(3, 32, kernel_size=3, stride=2),
            BasicConv2d(32, 32, kernel_size=3),
            BasicConv2d(32, 64, kernel_size=3, padding=1),
            Mixed3a(),
            Mixed4a(),
            Mixed5a(),
            *[InceptionA() for _ in range(4)],
            ReductionA(384, k=192, l=224, m=256, n=384),
            *[InceptionB() for _ in range(7)],
            ReductionB(),
            *[InceptionC() for _ in range(3)],
        )
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1536, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.global_pool(x), 1)
        return self.last_linear(self.head_drop(x))


def inception_v4(num_classes: int = 1000, **kwargs) -> InceptionV4:
    """Inception-v4 with random weights; timm's `inception_v4` state dicts load into it."""
    return InceptionV4(num_classes=num_classes, **kwargs)
