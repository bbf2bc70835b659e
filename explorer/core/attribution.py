"""Attributions with captum: Integrated Gradients, Saliency, Grad-CAM and Occlusion on the input,
and per-branch shares of the evidence.

Every method runs on a `CaptureModel`, whose probes give captum a module for each branch output.
The slow methods report progress and stop on a CancelToken: the forward function captum calls is
wrapped to count its calls and to raise `Cancelled` between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from explorer.core.cancel import CancelToken, ProgressCallback

if TYPE_CHECKING:  # torch and the capture model load only when an attribution runs
    import torch

    from explorer.core.capture import CaptureModel

METHODS = ("integrated_gradients", "saliency", "grad_cam", "occlusion")
#: |delta| / |f(x) - f(baseline)| above this is flagged: too few integration steps.
IG_DELTA_WARNING = 0.05


@dataclass(frozen=True)
class AttributionParams:
    """Method parameters a user can change."""

    ig_steps: int = 50
    ig_baseline: str = "black"  # "black" image, "zero" (the mean colour after normalisation), or "blur"
    internal_batch_size: int = 16
    occlusion_window: int = 32
    occlusion_stride: int = 16
    perturbations_per_eval: int = 8


@dataclass(frozen=True)
class AttributionResult:
    method: str
    target: int
    heatmap: np.ndarray  # (H, W) at the input's size
    raw: np.ndarray  # before upsampling: (H, W) for input methods, the layer's (h, w) for Grad-CAM
    signed: bool  # heatmap values can be negative
    layer: str | None = None
    delta: float | None = None  # IG convergence delta
    delta_relative: float | None = None

    @property
    def delta_flagged(self) -> bool:
        return self.delta_relative is not None and self.delta_relative > IG_DELTA_WARNING


class _Forward:
    """The function captum calls: counts calls for progress, raises Cancelled when asked."""

    def __init__(self, model: CaptureModel, total: int, progress: ProgressCallback | None, cancel: CancelToken | None):
        self.model, self.total, self.progress, self.cancel = model, max(total, 1), progress, cancel
        self.calls = 0

    def __call__(self, x):
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        out = self.model(x)
        self.calls += 1
        if self.progress is not None:
            self.progress(min(self.calls, self.total), self.total)
        return out


def baseline_for(x: torch.Tensor, kind: str, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> torch.Tensor:
    """A baseline in the normalised input space: a black image, zeros (the mean colour), or the
    image blurred (σ = 1/20 of its size), which keeps colours and removes detail."""
    import torch

    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "blur":
        from torchvision.transforms.functional import gaussian_blur

        sigma = max(x.shape[-2:]) / 20
        k = int(2 * round(3 * sigma) + 1)
        return gaussian_blur(x, [k, k], [sigma, sigma])
    if kind == "black":
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((0 - m) / s).expand_as(x).contiguous()
    raise ValueError(f"unknown baseline {kind!r}: black or zero")


def attribute(
    model: CaptureModel,
    x: torch.Tensor,
    method: str,
    target: int | None = None,
    *,
    node: str | None = None,
    branch: int | None = None,
    params: AttributionParams = AttributionParams(),
    baseline: torch.Tensor | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> AttributionResult:
    """Attribute `target` (default: the top-1 class) for one preprocessed image `x` (1, 3, H, W).

    `baseline` (IG only) overrides params.ig_baseline with a tensor shaped like `x`.
    """
    import torch
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError("attribute one image at a time: x must be (1, 3, H, W)")
    model.eval()
    if target is None:
        with torch.no_grad():
            target = int(model(x).argmax(1))
    h, w = x.shape[-2:]
    x = x.detach()

    if method == "integrated_gradients":
        calls = math.ceil(params.ig_steps / params.internal_batch_size) + 1
        fwd = _Forward(model, calls, progress, cancel)
        baseline = baseline_for(x, params.ig_baseline) if baseline is None else baseline.detach()
        attr, delta = IntegratedGradients(fwd).attribute(
            x, baselines=baseline, target=target, n_steps=params.ig_steps,
            internal_batch_size=params.internal_batch_size, return_convergence_delta=True)
        with torch.no_grad():
            gap = float(model(x)[0, target] - model(baseline)[0, target])
        heat = attr[0].sum(0).detach().cpu().numpy()
        d = float(delta.abs().max())
        return AttributionResult(method, target, heat, heat, True, None, d, d / abs(gap) if gap else math.inf)

    if method == "saliency":
        fwd = _Forward(model, 1, progress, cancel)
        attr = Saliency(fwd).attribute(x.clone().requires_grad_(True), target=target, abs=True)
        heat = attr[0].amax(0).detach().cpu().numpy()
        return AttributionResult(method, target, heat, heat, False)

    if method == "grad_cam":
        if node is None:
            raise ValueError("Grad-CAM needs a block (and optionally a branch) to look at")
        layer = model.layer(node, branch)
        fwd = _Forward(model, 1, progress, cancel)
        cam = LayerGradCam(fwd, layer).attribute(x, target=target, relu_attributions=True)
        raw = cam[0, 0].detach().cpu().numpy()
        up = LayerAttribution.interpolate(cam.detach(), (h, w), interpolate_mode="bilinear")
        name = node if branch is None else f"{node} branch {branch + 1}"
        return AttributionResult(method, target, up[0, 0].cpu().numpy(), raw, False, name)

    # occlusion
    win, stride = params.occlusion_window, params.occlusion_stride
    windows = (max(0, (h - win)) // stride + 1) * (max(0, (w - win)) // stride + 1)
    calls = math.ceil(windows / params.perturbations_per_eval) + 1
    fwd = _Forward(model, calls, progress, cancel)
    with torch.no_grad():
        attr = Occlusion(fwd).attribute(
            x, sliding_window_shapes=(x.shape[1], win, win), strides=(x.shape[1], stride, stride),
            baselines=0, target=target, perturbations_per_eval=params.perturbations_per_eval)
    heat = attr[0].sum(0).detach().cpu().numpy()
    return AttributionResult(method, target, heat, heat, True)


def branch_shares(model: CaptureModel, x: torch.Tensor, target: int | None = None,
                  blocks: list[str] | None = None) -> dict[str, list[float]]:
    """For each block, the share of the target's evidence flowing through each branch.

    Gradient × activation on every branch output (one forward and one backward for all blocks),
    summed in absolute value per branch and normalised per block: non-negative, summing to 1.
    """
    import torch
    from captum.attr import LayerGradientXActivation

    blocks = blocks if blocks is not None else list(model.block_branches)
    keys = [(b, k) for b in blocks for k in range(model.block_branches[b]) if (b, k) in model.probe_of]
    layers = [model.layer(b, k) for b, k in keys]
    model.eval()
    if target is None:
        with torch.no_grad():
            target = int(model(x).argmax(1))
    attrs = LayerGradientXActivation(model, layers).attribute(x.detach(), target=target)
    if not isinstance(attrs, (list, tuple)):
        attrs = [attrs]
    sums: dict[str, list[float]] = {b: [0.0] * model.block_branches[b] for b in blocks}
    for (b, k), a in zip(keys, attrs):
        sums[b][k] = float(a.detach().abs().sum())
    shares = {}
    for b, values in sums.items():
        total = sum(values)
        shares[b] = [v / total if total > 0 else 1.0 / len(values) for v in values]
    return shares


def shares_csv(shares: dict[str, list[float]], labels: dict[str, list[str]] | None = None) -> str:
    lines = ["block,branch,label,share"]
    for block, values in shares.items():
        for k, v in enumerate(values):
            label = (labels or {}).get(block, [""] * len(values))[k].replace('"', "'")
            lines.append(f'{block},{k},"{label}",{v:.6g}')
    return "\n".join(lines) + "\n"
