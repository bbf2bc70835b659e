"""Inception-ResNet-v1 and Inception-ResNet-v2: Inception modules with residual connections.

Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", AAAI 2017 (arXiv:1602.07261), Sections 3.2–3.3 and Figures 10–19.

Each residual Inception block runs its branches, concatenates them, restores the input's channel
count with a 1×1 convolution *without* activation ("1×1 Conv (…, Linear)" in the figures), scales
that residual by a constant between 0.1 and 0.3 and adds it to the block's input (Section 3.3:
scaling stabilises training of very wide residual Inception networks), then applies a ReLU:

    out = relu(x + scale · conv1×1(concat(branches(x))))

Batch norm is used in the convolutions only, not after the addition (Section 3.2).

Inception-ResNet-v2's parameter names follow timm's `inception_resnet_v2` (conv2d_1a … repeat,
mixed_6a, repeat_1, mixed_7a, repeat_2, block8, conv2d_7b, classif), so timm's state dicts load.
timm follows the released TensorFlow model, which departs from the paper's Figure 15 in ways the
weights fix: a stem with a 5×5 branch (mixed_5b) instead of Figure 3's, 320 / 1088 / 2080 channels
instead of Figures 16–19's 384 / 1154 / 2048, twice as many residual blocks (10 / 20 / 10) and a final 1×1
convolution to 1536 channels. Inception-ResNet-v1 follows the paper (Figures 10–14).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .inception_v4 import ReductionA
from .layers import BasicConv2d

__all__ = [
    "InceptionResNetA", "InceptionResNetB", "InceptionResNetC", "ReductionB", "InceptionResNetV1",
    "InceptionResNetV2", "inception_resnet_v1", "inception_resnet_v2",
]


# -- the residual Inception blocks -------------------------------------------------------------------


class InceptionResNetA(nn.Module):
    """Inception-ResNet-A, the 35×35 residual block (v1: Figure 10, v2: Figure 16).

    Branches: 1×1 (b0) ‖ 1×1 (b1[0]) → 3×3 (b1[1]) ‖ 1×1 (b2[0]) → 3×3 (b2[1]) → 3×3 (b2[2]);
    concatenated, a linear 1×1 convolution back to `channels`, scaled by `scale`, added to the input.
    """

    def __init__(self, channels: int, b0: int, b1: tuple[int, int], b2: tuple[int, int, int], scale: float):
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(channels, b0, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(channels, b1[0], kernel_size=1),
            BasicConv2d(b1[0], b1[1], kernel_size=3, padding=1),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(channels, b2[0], kernel_size=1),
            BasicConv2d(b2[0], b2[1], kernel_size=3, padding=1),
            BasicConv2d(b2[1], b2[2], kernel_size=3, padding=1),
        )
        self.conv2d = nn.Conv2d(b0 + b1[1] + b2[2], channels, kernel_size=1)  # linear: no BN, no ReLU
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)
        residual = self.conv2d(residual)
        return self.act(x + self.scale * residual)


class InceptionResNetB(nn.Module):
    """Inception-ResNet-B, the 17×17 residual block (v1: Figure 11, v2: Figure 17).

    Branches: 1×1 (b0) ‖ 1×1 (b1[0]) → 1×7 (b1[1]) → 7×1 (b1[2]); then the linear 1×1, scale and add.
    """

    def __init__(self, channels: int, b0: int, b1: tuple[int, int, int], scale: float):
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(channels, b0, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(channels, b1[0], kernel_size=1),
            BasicConv2d(b1[0], b1[1], kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(b1[1], b1[2], kernel_size=(7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(b0 + b1[2], channels, kernel_size=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = torch.cat([self.branch0(x), self.branch1(x)], 1)
        residual = self.conv2d(residual)
        return self.act(x + self.scale * residual)


class InceptionResNetC(nn.Module):
    """Inception-ResNet-C, the 8×8 residual block (v1: Figure 13, v2: Figure 19).

    Branches: 1×1 (b0) ‖ 1×1 (b1[0]) → 1×3 (b1[1]) → 3×1 (b1[2]); then the linear 1×1, scale and add.
    `activate=False` leaves out the final ReLU (the last block of the released v2 model).
    """

    def __init__(self, channels: int, b0: int, b1: tuple[int, int, int], scale: float, activate: bool = True):
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(channels, b0, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(channels, b1[0], kernel_size=1),
            BasicConv2d(b1[0], b1[1], kernel_size=(1, 3), padding=(0, 1)),
            BasicConv2d(b1[1], b1[2], kernel_size=(3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(b0 + b1[2], channels, kernel_size=1)
        self.relu = nn.ReLU() if activate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = torch.cat([self.branch0(x), self.branch1(x)], 1)
        residual = self.conv2d(residual)
        out = x + self.scale * residual
        if self.relu is not None:
            out = self.relu(out)
        return out


class ReductionB(nn.Module):
    """Reduction-B of the Inception-ResNets, 17×17 → 8×8 (v1: Figure 12, v2: Figure 18).

    1×1 (256) → 3×3 /2 V (b0) ‖ 1×1 (256) → 3×3 /2 V (b1) ‖ 1×1 (256) → 3×3 (b2[0]) → 3×3 /2 V (b2[1])
    ‖ 3×3 max pool /2 V. (The figures draw the pool first; the released v2 weights concatenate it last.)
    """

    def __init__(self, in_channels: int, b0: int, b1: int, b2: tuple[int, int]):
        super().__init__()
        self.branch0 = nn.Sequential(
            BasicConv2d(in_channels, 256, kernel_size=1),
            BasicConv2d(256, b0, kernel_size=3, stride=2),
        )
        self.branch1 = nn.Sequential(
            BasicConv2d(in_channels, 256, kernel_size=1),
            BasicConv2d(256, b1, kernel_size=3, stride=2),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, 256, kernel_size=1),
            BasicConv2d(256, b2[0], kernel_size=3, padding=1),
            BasicConv2d(b2[0], b2[1], kernel_size=3, stride=2),
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class Mixed5b(nn.Module):
    """The last stem module of the released Inception-ResNet-v2 (TF-slim's Mixed_5b): 192 → 320 channels.

    1×1 (96) ‖ 1×1 (48) → 5×5 (64) ‖ 1×1 (64) → 3×3 (96) → 3×3 (96) ‖ avg pool → 1×1 (64) —
    an Inception v3 35×35 module; the paper's Figure 3 stem is used by Inception-v4 instead.
    """

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(192, 48, kernel_size=1),
            BasicConv2d(48, 64, kernel_size=5, padding=2),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(192, 64, kernel_size=1),
            BasicConv2d(64, 96, kernel_size=3, padding=1),
            BasicConv2d(96, 96, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            BasicConv2d(192, 64, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


# -- the networks (Figure 15) ----------------------------------------------------------------------


class InceptionResNetV1(nn.Module):
    """Inception-ResNet-v1 (Figure 15 with the v1 modules), about the cost of Inception v3.

    Stem (Figure 14) → 5 × Inception-ResNet-A (256 ch, 35×35) → Reduction-A (k, l, m, n = 192, 192,
    256, 384) → 10 × Inception-ResNet-B (896 ch, 17×17) → Reduction-B → 5 × Inception-ResNet-C
    (1792 ch, 8×8) → average pooling → dropout (keep 0.8) → classifier.

    The paper gives the residual scale only as "between 0.1 and 0.3"; we use the released v2 model's
    0.17 / 0.10 / 0.20 for the A / B / C blocks.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2,
                 scales: tuple[float, float, float] = (0.17, 0.10, 0.20)):
        super().__init__()
        # Stem (Figure 14): 299×299×3 → 35×35×256.
        self.conv2d_1a = BasicConv2d(3, 32, kernel_size=3, stride=2)       # 149×149×32
        self.conv2d_2a = BasicConv2d(32, 32, kernel_size=3)                # 147×147×32
        self.conv2d_2b = BasicConv2d(32, 64, kernel_size=3, padding=1)     # 147×147×64
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)                        # 73×73×64
        self.conv2d_3b = BasicConv2d(64, 80, kernel_size=1)                # 73×73×80
        self.conv2d_4a = BasicConv2d(80, 192, kernel_size=3)               # 71×71×192
        self.conv2d_4b = BasicConv2d(192, 256, kernel_size=3, stride=2)    # 35×35×256

        a, b, c = scales
        self.repeat = nn.Sequential(*[InceptionResNetA(256, 32, (32, 32), (32, 32, 32), a) for _ in range(5)])
        self.mixed_6a = ReductionA(256, k=192, l=192, m=256, n=384)       # 17×17×896
        self.repeat_1 = nn.Sequential(*[InceptionResNetB(896, 128, (128, 128, 128), b) for _ in range(10)])
        self.mixed_7a = ReductionB(896, 384, 256, (256, 256))             # 8×8×1792
        self.repeat_2 = nn.Sequential(*[InceptionResNetC(1792, 192, (192, 192, 192), c) for _ in range(5)])

        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(dropout)
        self.classif = nn.Linear(1792, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.maxpool_3a(x)
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(x)))
        x = self.repeat(x)
        x = self.mixed_6a(x)
        x = self.repeat_1(x)
        x = self.mixed_7a(x)
        x = self.repeat_2(x)
        x = torch.flatten(self.global_pool(x), 1)
        return self.classif(self.head_drop(x))


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 as released (timm's `inception_resnet_v2`), about the cost of Inception-v4.

    Stem (conv2d_1a … maxpool_5a, mixed_5b; 35×35×320) → 10 × Inception-ResNet-A (scale 0.17) →
    Reduction-A (k, l, m, n = 256, 256, 384, 384; 17×17×1088) → 20 × Inception-ResNet-B (scale 0.10)
    → Reduction-B (8×8×2080) → 9 × Inception-ResNet-C (scale 0.20) and one without the final ReLU
    (block8) → 1×1 conv to 1536 → average pooling → dropout (keep 0.8) → classifier.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, kernel_size=3, stride=2)       # 149×149×32
        self.conv2d_2a = BasicConv2d(32, 32, kernel_size=3)                # 147×147×32
        self.conv2d_2b = BasicConv2d(32, 64, kernel_size=3, padding=1)     # 147×147×64
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)                        # 73×73×64
        self.conv2d_3b = BasicConv2d(64, 80, kernel_size=1)                # 73×73×80
        self.conv2d_4a = BasicConv2d(80, 192, kernel_size=3)               # 71×71×192
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)                        # 35×35×192
        self.mixed_5b = Mixed5b()                                          # 35×35×320

        self.repeat = nn.Sequential(*[InceptionResNetA(320, 32, (32, 32), (32, 48, 64), 0.17) for _ in range(10)])
        self.mixed_6a = ReductionA(320, k=256, l=256, m=384, n=384)       # 17×17×1088
        self.repeat_1 = nn.Sequential(*[InceptionResNetB(1088, 192, (128, 160, 192), 0.10) for _ in range(20)])
        self.mixed_7a = ReductionB(1088, 384, 288, (288, 320))            # 8×8×2080
        self.repeat_2 = nn.Sequential(*[InceptionResNetC(2080, 192, (192, 224, 256), 0.20) for _ in range(9)])
        self.block8 = InceptionResNetC(2080, 192, (192, 224, 256), 1.0, activate=False)
        self.conv2d_7b = BasicConv2d(2080, 1536, kernel_size=1)           # 8×8×1536

        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(dropout)
        self.classif = nn.Linear(1536, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.maxpool_3a(x)
        x = self.conv2d_4a(self.conv2d_3b(x))
        x = self.maxpool_5a(x)
        x = self.mixed_5b(x)
        x = self.repeat(x)
        x = self.mixed_6a(x)
        x = self.repeat_1(x)
        x = self.mixed_7a(x)
        x = self.repeat_2(x)
        x = self.block8(x)
        x = self.conv2d_7b(x)
        x = torch.flatten(self.global_pool(x), 1)
        return self.classif(self.head_drop(x))


def inception_resnet_v1(num_classes: int = 1000, **kwargs) -> InceptionResNetV1:
    """Inception-ResNet-v1 after the paper (random weights)."""
    return InceptionResNetV1(num_classes=num_classes, **kwargs)


def inception_resnet_v2(num_classes: int = 1000, **kwargs) -> InceptionResNetV2:
    """Inception-ResNet-v2 with random weights; timm's `inception_resnet_v2` state dicts load into it."""
    return InceptionResNetV2(num_classes=num_classes, **kwargs)
