"""GoogLeNet exactly as the paper describes it (Inception v1).

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842).

What distinguishes it from torchvision's `googlenet` (which copies a later re-implementation):

- the "#5×5" branch of every Inception module really is a 5×5 convolution (torchvision: 3×3);
- no batch normalisation (the paper predates it); every convolution has a bias and a ReLU
  ("All the convolutions, including those inside the Inception modules, use rectified linear
  activation", Section 5);
- local response normalisation after the first max pool and after the second convolution
  (Figure 3);
- two auxiliary classifiers on inception (4a) and (4d), used in training only (Section 5);
- 40% dropout before the final classifier (Table 1).

Channel widths are those of Table 1. Pooling rounds up (`ceil_mode=True`) as in the original
Caffe model, so a 224×224 input gives the 112 → 56 → 28 → 14 → 7 grid of Table 1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

__all__ = ["GoogLeNetPaper", "GoogLeNetOutputs", "Inception", "InceptionAux", "googlenet_paper"]


class ConvReLU(nn.Module):
    """A convolution (with bias) followed by a ReLU: the paper's basic layer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class Inception(nn.Module):
    """The Inception module with dimension reductions (Figure 2b).

    Four parallel branches, concatenated along the channels in this order — the columns of Table 1:

    1. #1×1:                     1×1 convolution
    2. #3×3 reduce → #3×3:       1×1 convolution, then 3×3 convolution
    3. #5×5 reduce → #5×5:       1×1 convolution, then 5×5 convolution
    4. pool proj:                3×3 max pooling (stride 1), then 1×1 convolution

    The 1×1 "reduce" layers shrink the channels before the expensive 3×3 and 5×5 filters; that is
    what keeps the module affordable (Section 4).
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int):
        super().__init__()
        self.branch1 = ConvReLU(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            ConvReLU(in_channels, ch3x3red, kernel_size=1),
            ConvReLU(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            ConvReLU(in_channels, ch5x5red, kernel_size=1),
            ConvReLU(ch5x5red, ch5x5, kernel_size=5, padding=2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            ConvReLU(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """An auxiliary classifier (Section 5), attached to inception (4a) and (4d) during training.

    5×5 average pooling with stride 3 (14×14 → 4×4), a 1×1 convolution with 128 filters and ReLU,
    a fully connected layer of 1024 units with ReLU, 70% dropout, and a linear classifier. Their
    losses were added to the total loss with weight 0.3; at inference they are discarded.
    """

    def __init__(self, in_channels: int, num_classes: int = 1000, dropout: float = 0.7):
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=5, stride=3)
        self.conv = ConvReLU(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.pool(x))
        x = torch.flatten(x, 1)
        x = self.dropout(self.relu(self.fc1(x)))
        return self.fc2(x)


class GoogLeNetOutputs(NamedTuple):
    """What the network returns in training mode: the main logits and the two auxiliary ones."""

    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


class GoogLeNetPaper(nn.Module):
    """GoogLeNet, layer by layer after Table 1 and Figure 3.

    Module names follow torchvision's `googlenet` (conv1, maxpool1, …, inception5b, fc) so the two
    can be compared node by node; the paper's extra layers are `lrn1` and `lrn2`.

    In eval mode `forward` returns the logits; in training mode a `GoogLeNetOutputs` with the two
    auxiliary classifiers' logits as well. The branch is on `self.training` (a Python bool), so the
    forward is traceable by torch.fx in either mode.
    """

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, dropout: float = 0.4,
                 dropout_aux: float = 0.7):
        super().__init__()
        self.aux_logits = aux_logits

        # Stem (Figure 3, bottom): conv 7×7/2, max pool, LRN, conv 1×1 (reduce), conv 3×3, LRN, max pool.
        # The paper gives no LRN parameters; these are the original Caffe model's (AlexNet's window of 5).
        self.conv1 = ConvReLU(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv2 = ConvReLU(64, 64, kernel_size=1)
        self.conv3 = ConvReLU(64, 192, kernel_size=3, padding=1)
        self.lrn2 = nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # Inception modules, Table 1: in, #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj.
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)

        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout_aux)  # on inception (4a)
            self.aux2 = InceptionAux(528, num_classes, dropout_aux)  # on inception (4d)
        else:
            self.aux1 = self.aux2 = None

        # Head: Table 1's "avg pool 7×7/1" is a global average at 224×224; an adaptive pool keeps
        # the network usable at other input sizes with the same result at the native one.
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

        self._init_weights()

    def _init_weights(self) -> None:
        # Without batch norm, PyTorch's default initialisation lets activations fade layer after
        # layer; He initialisation keeps a random network responsive to its input.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor):
        x = self.maxpool1(self.conv1(x))       # 112×112×64 → 56×56×64
        x = self.lrn1(x)
        x = self.conv3(self.conv2(x))          # 56×56×192
        x = self.maxpool2(self.lrn2(x))        # 28×28×192

        x = self.inception3a(x)                # 28×28×256
        x = self.inception3b(x)                # 28×28×480
        x = self.maxpool3(x)                   # 14×14×480

        x = self.inception4a(x)                # 14×14×512
        aux1 = self.aux1(x) if self.training and self.aux1 is not None else None
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)                # 14×14×528
        aux2 = self.aux2(x) if self.training and self.aux2 is not None else None
        x = self.inception4e(x)                # 14×14×832
        x = self.maxpool4(x)                   # 7×7×832

        x = self.inception5a(x)
        x = self.inception5b(x)                # 7×7×1024

        x = torch.flatten(self.avgpool(x), 1)  # 1024
        x = self.fc(self.dropout(x))           # 1000
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


def googlenet_paper(num_classes: int = 1000, aux_logits: bool = True, **kwargs) -> GoogLeNetPaper:
    """GoogLeNet as in Szegedy et al. 2014 (random weights: no pretrained weights of it exist in torchvision)."""
    return GoogLeNetPaper(num_classes=num_classes, aux_logits=aux_logits, **kwargs)
