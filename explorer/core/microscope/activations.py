"""Per-branch activations: statistics and feature maps of the tensors a `Capture` kept.

Only what a view shows crosses to the CPU: one branch's maps for one image, as numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from explorer.core.graph.blockgraph import BlockGraph
from explorer.core.graph.capture import Capture
from explorer.core.text import branch_number


@dataclass(frozen=True)
class BranchStats:
    """Summary of one branch's output for one image."""

    index: int
    label: str
    channels: int
    mean: float
    max: float
    zero_fraction: float  # share of exact zeros (after the branch's final ReLU)
    energy_share: float  # its sum of squares over the block output's (cat blocks: sums to 1)


def branch_stats(capture: Capture, graph: BlockGraph, block: str, sample: int = 0) -> list[BranchStats]:
    """Statistics of `block`'s branches, computed where the tensors are (one transfer of a few numbers)."""
    node = graph.node(block)
    tensors = capture.branches[block]
    kept = [(k, t[sample]) for k, t in enumerate(tensors) if t is not None]
    total = capture.outputs[block][sample].double().pow(2).sum()
    rows = [torch.stack([x.mean().double(), x.max().double(), (x == 0).double().mean(), x.double().pow(2).sum()])
            for _, x in kept]
    numbers = torch.cat([total.view(1), *rows]).tolist() if rows else [0.0]
    total = numbers[0]
    out = []
    for (k, x), i in zip(kept, range(1, len(numbers), 4)):
        mean, peak, zeros, energy = numbers[i : i + 4]
        out.append(BranchStats(
            index=k, label=node.branches[k].label, channels=int(x.shape[0]), mean=mean, max=peak,
            zero_fraction=zeros, energy_share=energy / total if total > 0 else 0.0,
        ))
    return out


@dataclass(frozen=True)
class FeatureMaps:
    """One branch's channels for one image, in display order."""

    maps: np.ndarray  # (C, H, W) float32, raw activations
    channels: np.ndarray  # original channel index of each map
    means: np.ndarray  # mean activation of each map

    def normalised(self, scale: str = "shared") -> np.ndarray:
        """Maps scaled to 0..1: one scale for all channels ("shared") or one per channel ("channel")."""
        m = self.maps
        if scale == "shared":
            lo, hi = float(m.min()), float(m.max())
            return ((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)).astype(np.float32)
        lo = m.min(axis=(1, 2), keepdims=True)
        hi = m.max(axis=(1, 2), keepdims=True)
        span = np.where(hi > lo, hi - lo, 1.0)
        return ((m - lo) / span).astype(np.float32)


def feature_maps(tensor: torch.Tensor, sample: int = 0, order: str = "index", limit: int | None = None
                 ) -> FeatureMaps:
    """Copy one image's channels of `tensor` (N, C, H, W) to the CPU; order "index" or "mean" (highest first)."""
    x = tensor[sample].detach()
    means = x.mean(dim=(1, 2))
    idx = torch.argsort(means, descending=True) if order == "mean" else torch.arange(x.shape[0], device=x.device)
    if limit is not None:
        idx = idx[:limit]
    # Contiguous (C, H, W) before the copy: a channels-last capture would give strided maps.
    return FeatureMaps(maps=x[idx].float().contiguous().cpu().numpy(), channels=idx.cpu().numpy(),
                       means=means[idx].float().cpu().numpy())


def upsample(map2d: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of one map to the input's size, for overlays."""
    t = torch.as_tensor(np.asarray(map2d, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def stats_csv(stats: dict[str, list[BranchStats]]) -> str:
    """Per-branch statistics of several blocks as CSV (each branch by its 1-based number, as Details shows it)."""
    lines = ["block,branch_number,label,channels,mean,max,zero_fraction,energy_share"]
    for block, rows in stats.items():
        for s in rows:
            label = s.label.replace('"', "'")
            lines.append(f'{block},{branch_number(s.index)},"{label}",{s.channels},{s.mean:.6g},{s.max:.6g},'
                         f"{s.zero_fraction:.6g},{s.energy_share:.6g}")
    return "\n".join(lines) + "\n"
