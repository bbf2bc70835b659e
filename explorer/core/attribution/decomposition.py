"""A decomposition that adds up: each branch's contribution to the target's logit, by layer conductance.

Integrated Gradients from a baseline x' to the image x is complete: the attributions sum to f(x) − f(x'). Layer
conductance (Dhamdhere et al. 2018; captum's `LayerConductance`) carries the same path integral through a layer's
neurons, and where that layer is a cut of the network — every path from the input to the output crosses it — its
neurons' conductances sum to f(x) − f(x') as well. An Inception block's concatenated output is such a cut, and its
channels belong to one branch each, so the sum over a branch's channels is that branch's part of f(x) − f(x'),
and the branches' parts add up to the whole, up to the integral's numerical error, which is reported (not
hidden) as `error`.

This sits beside the |gradient × activation| shares (a heuristic that sums to nothing in particular) and the
knock-out effects (what the output does without a branch), so the three views can be compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from explorer.core.cancel import CancelToken

if TYPE_CHECKING:
    import torch

    from explorer.core.graph.blockgraph import BlockGraph
    from explorer.core.graph.capture import CaptureModel

#: Integration steps of the conductance (Gauss–Legendre nodes). Measured on the trained demo network, the
#: completeness error per block is 0.2–8 % of f(x) − f(x') at 32 steps, 0.01–2 % at 128 and under 0.4 % at 512;
#: a random network is much rougher (GoogLeNet with calibrated random weights: still ~10 % at 512).
STEPS = 128


@dataclass(frozen=True)
class BranchConductance:
    """Each branch's conductance to the target's logit at one block, and what it should add up to."""

    model: str
    block: str
    target: int
    contributions: tuple[float, ...]  #: per branch, by branch_index
    output: float  #: f(x): the target's logit on the image
    baseline_output: float  #: f(x'): the target's logit on the baseline
    baseline: str  #: what x' was ("black", "zero", "blur")

    @property
    def total(self) -> float:
        """The branches' contributions summed."""
        return float(sum(self.contributions))

    @property
    def difference(self) -> float:
        """f(x) − f(x'), from two plain forwards: what the contributions must add up to."""
        return self.output - self.baseline_output

    @property
    def error(self) -> float:
        """How far the sum is from f(x) − f(x') (the integral's numerical error)."""
        return self.total - self.difference

    def relative_error(self) -> float:
        """|error| as a share of |f(x) − f(x')| (inf when the two forwards agree exactly)."""
        return abs(self.error) / abs(self.difference) if self.difference else float("inf")


def concatenated_widths(graph: BlockGraph, block: str) -> list[int]:
    """The channels each branch of `block` puts into its output, in order; ValueError for a block whose output is
    not the concatenation of branches that all read the block's input (a residual sum, a DenseNet layer): its
    branches are no cut of the network and their conductances would not add up."""
    node = graph.node(block)
    if not node.is_block or node.merge != "cat":
        raise ValueError(f"{block} does not concatenate its branches: their conductances do not add up")
    if any(b.reads for b in node.branches):
        raise ValueError(f"{block}'s branches read each other's outputs: they are no cut of the network")
    widths = [b.out_channels for b in node.branches]
    if node.out_channels is not None and sum(widths) != node.out_channels:
        raise ValueError(f"{block}: its branches' {sum(widths)} channels are not its {node.out_channels}")
    return widths


def branch_conductance(model: CaptureModel, graph: BlockGraph, x: torch.Tensor, block: str,
                       target: int | None = None, *, baseline: str = "black", steps: int = STEPS,
                       normalisation: dict | None = None, internal_batch_size: int = 16,
                       progress: Callable[[int, int | None], None] | None = None,
                       cancel: CancelToken | None = None) -> BranchConductance:
    """Layer conductance of the target's logit at `block`'s concatenated output, summed per branch.

    `x`: one image (1, 3, H, W) in the network's input space; `baseline`: "black", "zero" or "blur" (see
    explorer.core.attribution.methods.baseline_for; `normalisation`: its mean and std keywords for "black");
    `target`: a class index (None: the top-1)."""
    import torch
    from captum.attr import LayerConductance

    from explorer.core.attribution.methods import baseline_for, ig_method

    widths = concatenated_widths(graph, block)
    model.eval()
    x = x.detach()
    x0 = baseline_for(x, baseline, **(normalisation or {}))
    with torch.no_grad():
        logits, logits0 = model(x), model(x0)
    if target is None:
        target = int(logits.argmax(1))
    if cancel is not None:
        cancel.raise_if_cancelled()
    if progress is not None:
        progress(0, 1)
    conductance = LayerConductance(model, model.layer(block, None)).attribute(
        x, baselines=x0, target=target, n_steps=steps, method=ig_method(steps),
        internal_batch_size=internal_batch_size)
    if cancel is not None:
        cancel.raise_if_cancelled()
    per_channel = conductance.detach().double().sum(dim=(0, 2, 3))
    if per_channel.numel() != sum(widths):
        raise ValueError(f"{block}: its output has {per_channel.numel()} channels, its branches {sum(widths)}")
    parts, start = [], 0
    for w in widths:
        parts.append(float(per_channel[start:start + w].sum()))
        start += w
    if progress is not None:
        progress(1, 1)
    return BranchConductance(getattr(model, "graph_name", ""), block, int(target), tuple(parts),
                             float(logits[0, target]), float(logits0[0, target]), baseline)
