"""Attributions with captum: Integrated Gradients, Saliency (each also smoothed with SmoothGrad),
Grad-CAM and Occlusion on the input; the rest of the CAM family from pytorch-grad-cam (Grad-CAM++,
Score-CAM, EigenCAM, LayerCAM, HiResCAM, XGrad-CAM); and per-branch shares of the evidence.

Every method runs on a `CaptureModel`, whose probes give captum a module for each branch output.
The slow methods report progress and stop on a CancelToken: the forward function captum calls is
wrapped to count its calls and to raise `Cancelled` between them; branch shares count blocks.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explorer.core.cancel import CancelToken, ProgressCallback
from explorer.core.text import branch_number, fmt_branch

if TYPE_CHECKING:  # torch and the capture model load only when an attribution runs
    import torch

    from explorer.core.graph.capture import CaptureModel

#: pytorch-grad-cam's class for each CAM method it computes (Grad-CAM itself is captum's).
LIBRARY_CAMS = {
    "grad_cam_plus_plus": "GradCAMPlusPlus",
    "score_cam": "ScoreCAM",
    "eigen_cam": "EigenCAM",
    "layer_cam": "LayerCAM",
    "hires_cam": "HiResCAM",
    "xgrad_cam": "XGradCAM",
}
#: Methods that look at a block's output (or one branch's): they need `node` (and take `branch`).
CAM_METHODS = ("grad_cam", *LIBRARY_CAMS)
#: captum's NoiseTunnel (SmoothGrad: the map averaged over noisy copies of the image) around a method.
SMOOTHGRAD = {"smoothgrad_integrated_gradients": "integrated_gradients", "smoothgrad_saliency": "saliency"}
METHODS = ("integrated_gradients", "saliency", "grad_cam", "occlusion", *LIBRARY_CAMS, *SMOOTHGRAD)
#: How a CAM's class-activation map becomes the heatmap: its positive part (the papers' ReLU), the
#: signed map, or its absolute value.
CAM_MAPS = ("positive", "signed", "absolute")
#: |delta| / |f(x) - f(baseline)| above this is flagged: too few integration steps.
IG_DELTA_WARNING = 0.05
#: Up to this many steps IG uses captum's Gauss–Legendre rule, above it the trapezoid rule. The
#: Gauss–Legendre nodes come from numpy's `leggauss`, an O(n³) eigenvalue solve captum runs twice
#: before the first forward, which nothing can interrupt: measured on 2 CPU cores, 512 steps take
#: about 40 ms, 1024 about 0.12 s, 2048 from 0.6 to 5 s (under load) and 4000 about 5 s, each.
IG_GAUSS_LEGENDRE_MAX_STEPS = 512
#: The most steps the window offers: each is a forward and a backward pass over the image.
IG_MAX_STEPS = 2000


def ig_method(steps: int) -> str:
    """captum's integration rule for `steps` steps: Gauss–Legendre, or the trapezoid rule when its
    nodes would be slow to compute (see IG_GAUSS_LEGENDRE_MAX_STEPS)."""
    return "gausslegendre" if steps <= IG_GAUSS_LEGENDRE_MAX_STEPS else "riemann_trapezoid"


#: Integrated-gradients steps per batch on a GPU (halved while it runs out of memory).
CUDA_IG_BATCH = 64


@dataclass(frozen=True)
class AttributionParams:
    """Method parameters a user can change."""

    ig_steps: int = 50
    ig_baseline: str = "black"  # "black" image, "zero" (the mean colour after normalisation), or "blur"
    internal_batch_size: int = 16
    occlusion_window: int = 32
    occlusion_stride: int = 16
    perturbations_per_eval: int = 8
    cam_map: str = "positive"  # one of CAM_MAPS
    score_cam_batch: int = 16  # masked images per forward (Score-CAM: one per channel of the layer)
    smoothgrad_samples: int = 8
    smoothgrad_stdev: float = 0.15  # noise σ as a share of the image's value range (SmoothGrad's 10–20 %)
    #: The network input's normalisation (per-channel mean and deviation), which places the "black" baseline;
    #: None: torchvision's ImageNet convention. The session and the command line fill them from the model's
    #: preprocessing (the demo model scales pixels to [-1, 1], where black is -1, not ImageNet's -2.1).
    input_mean: tuple[float, float, float] | None = None
    input_std: tuple[float, float, float] | None = None

    def normalisation(self) -> dict:
        """baseline_for's mean and std keywords (empty: its ImageNet defaults)."""
        if self.input_mean is None or self.input_std is None:
            return {}
        return {"mean": tuple(self.input_mean), "std": tuple(self.input_std)}


def with_normalisation(params: AttributionParams, transforms) -> AttributionParams:
    """`params` with the input normalisation of `transforms` (a model's preprocessing, with `mean` and `std`), unless
    it has one already or the preprocessing names none."""
    import dataclasses

    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    if params.input_mean is not None or mean is None or std is None:
        return params
    return dataclasses.replace(params, input_mean=tuple(float(m) for m in mean), input_std=tuple(float(v) for v in std))


@dataclass(frozen=True)
class AttributionResult:
    method: str
    target: int
    heatmap: np.ndarray  # (H, W) at the input's size
    raw: np.ndarray  # before upsampling: (H, W) for input methods; for CAMs the signed map at the layer's (h, w)
    signed: bool  # heatmap values can be negative
    layer: str | None = None
    delta: float | None = None  # IG convergence delta
    delta_relative: float | None = None
    ig_method: str | None = None  # IG's integration rule (see ig_method)
    device: str = "cpu"  # where the gradients were computed
    notice: str | None = None  # e.g. the GPU ran out of memory and the CPU computed it instead

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

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError("attribute one image at a time: x must be (1, 3, H, W)")
    model.eval()
    if cancel is not None:
        cancel.raise_if_cancelled()
    if target is None:
        with torch.no_grad():
            target = int(model(x).argmax(1))
    x = x.detach()
    if method == "integrated_gradients":
        return _integrated_gradients_fitted(model, x, target, params, baseline, progress, cancel)
    if method == "saliency":
        return _saliency(model, x, target, progress, cancel)
    if method in CAM_METHODS:
        return _cam(model, x, method, target, node, branch, params, progress, cancel)
    if method in SMOOTHGRAD:
        return _smoothgrad(model, x, method, target, params, baseline, progress, cancel)
    return _occlusion(model, x, target, params, progress, cancel)


def _integrated_gradients_fitted(model: CaptureModel, x: torch.Tensor, target: int, params: AttributionParams,
                                 baseline: torch.Tensor | None, progress: ProgressCallback | None,
                                 cancel: CancelToken | None) -> AttributionResult:
    """Integrated Gradients with as many steps per batch as the device takes: on a GPU (latency-bound at
    batch 16) all steps at once where they fit, halved while it runs out of memory, down to
    params.internal_batch_size."""
    import torch

    baseline = baseline_for(x, params.ig_baseline, **params.normalisation()) if baseline is None else baseline.detach()
    per = params.internal_batch_size
    if x.device.type == "cuda":
        per = max(per, min(params.ig_steps, CUDA_IG_BATCH))
    while True:
        try:
            return _integrated_gradients(model, x, baseline, target, params.ig_steps, per, progress, cancel)
        except torch.cuda.OutOfMemoryError:
            if per <= params.internal_batch_size:
                raise
            torch.cuda.empty_cache()
            per = max(params.internal_batch_size, per // 2)


def _saliency(model: CaptureModel, x: torch.Tensor, target: int, progress: ProgressCallback | None,
              cancel: CancelToken | None) -> AttributionResult:
    """The gradient's magnitude at each pixel, its largest over the colour channels."""
    from captum.attr import Saliency

    fwd = _Forward(model, 1, progress, cancel)
    attr = Saliency(fwd).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    heat = attr[0].amax(0).detach().cpu().numpy()
    return AttributionResult("saliency", target, heat, heat, False)


def _cam(model: CaptureModel, x: torch.Tensor, method: str, target: int, node: str | None, branch: int | None,
         params: AttributionParams, progress: ProgressCallback | None, cancel: CancelToken | None
         ) -> AttributionResult:
    """A CAM method at block `node`'s output (or its branch `branch`'s): Grad-CAM from captum, the rest
    from pytorch-grad-cam, the map made a heatmap as params.cam_map says."""
    from captum.attr import LayerGradCam

    if node is None:
        raise ValueError(f"{method.replace('_', ' ')} needs a block (and optionally a branch) to look at")
    if params.cam_map not in CAM_MAPS:
        raise ValueError(f"unknown CAM map {params.cam_map!r}; one of {', '.join(CAM_MAPS)}")
    layer = model.layer(node, branch)
    name = node if branch is None else f"{node} {fmt_branch(branch)}"
    if method == "grad_cam":
        fwd = _Forward(model, 1, progress, cancel)
        # The signed map: its positive part is taken below, where an empty one can be explained.
        cam = LayerGradCam(fwd, layer).attribute(x, target=target, relu_attributions=False)[0, 0].detach()
    else:
        cam = _library_cam(model, x, method, target, layer, params, progress, cancel)
    return _cam_result(method, target, cam, tuple(x.shape[-2:]), params.cam_map, name)


def _occlusion(model: CaptureModel, x: torch.Tensor, target: int, params: AttributionParams,
               progress: ProgressCallback | None, cancel: CancelToken | None) -> AttributionResult:
    """The fall of the target's score when a window of the image is zeroed, summed over the windows
    covering each pixel; progress counts captum's forwards (one per perturbations_per_eval windows)."""
    import torch
    from captum.attr import Occlusion

    h, w = x.shape[-2:]
    win, stride = params.occlusion_window, params.occlusion_stride
    windows = (max(0, (h - win)) // stride + 1) * (max(0, (w - win)) // stride + 1)
    calls = math.ceil(windows / params.perturbations_per_eval) + 1
    fwd = _Forward(model, calls, progress, cancel)
    with torch.no_grad():
        attr = Occlusion(fwd).attribute(
            x, sliding_window_shapes=(x.shape[1], win, win), strides=(x.shape[1], stride, stride),
            baselines=0, target=target, perturbations_per_eval=params.perturbations_per_eval)
    heat = attr[0].sum(0).detach().cpu().numpy()
    return AttributionResult("occlusion", target, heat, heat, True)


def _cam_result(method: str, target: int, cam: torch.Tensor, size: tuple[int, int], mode: str,
                layer: str) -> AttributionResult:
    """A CAM's heatmap at the image's size (bilinear, as captum's LayerAttribution.interpolate), with a
    notice when its positive part is empty: every weighted activation argues against the class."""
    import torch.nn.functional as F

    cam = cam.float().cpu()
    raw = cam.numpy()
    notice = None
    if mode == "positive":
        if not bool((cam > 0).any()):
            label = method.replace("_", " ")
            notice = (f"{label} at {layer} is empty for class {target}: every weighted activation there "
                      f"counts against the class (largest {float(cam.max()):.3g}); show the signed or "
                      "absolute map to see where")
        cam = cam.clamp(min=0)
    elif mode == "absolute":
        cam = cam.abs()
    up = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return AttributionResult(method, target, up.numpy(), raw, mode == "signed", layer, notice=notice)


def _counting_module(model: CaptureModel, total: int, progress, cancel):
    """The model as pytorch-grad-cam needs it (an nn.Module, for its device and eval()), with progress
    and cancel at each forward; its `total` can be raised once known (Score-CAM's channel count)."""
    import torch

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model
            self.total, self.calls = max(total, 1), 0

        def forward(self, x):
            if cancel is not None:
                cancel.raise_if_cancelled()
            out = self.inner(x)
            self.calls += 1
            if progress is not None:
                progress(min(self.calls, self.total), self.total)
            return out

    return Counting()


def _quiet_score_cam() -> None:
    """Score-CAM draws a tqdm progress bar on stderr for every map: ours reports progress instead, and
    the command line's stderr carries one line per problem only."""
    from pytorch_grad_cam import score_cam

    if not getattr(score_cam, "_explorer_quiet", False):
        score_cam.tqdm = type("tqdm", (), {"tqdm": staticmethod(lambda iterable, *a, **k: iterable)})
        score_cam._explorer_quiet = True


def _library_cam(model: CaptureModel, x: torch.Tensor, method: str, target: int, layer,
                 params: AttributionParams, progress, cancel) -> torch.Tensor:
    """The signed class-activation map (h, w) of one of pytorch-grad-cam's methods at probe `layer`.

    The library's own `__call__` scales each map to 0…1 after a ReLU, which hides an empty map and
    the map's scale: we run its steps (hooks, gradient, `get_cam_image`) and keep the raw map. The
    gradient is taken with autograd.grad, so the shared model's parameters gather no .grad."""
    import pytorch_grad_cam
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method == "score_cam":
        _quiet_score_cam()
    wrapper = _counting_module(model, 1, progress, cancel)
    cam = getattr(pytorch_grad_cam, LIBRARY_CAMS[method])(wrapper, [layer])
    if method == "score_cam":
        cam.batch_size = params.score_cam_batch
    try:
        xin = x.clone().requires_grad_(cam.uses_gradients)
        out = cam.activations_and_grads(xin)
        if cam.uses_gradients:
            torch.autograd.grad(out[0, target], xin)
            grads = cam.activations_and_grads.gradients[0].numpy()
        else:
            grads = None
        acts = cam.activations_and_grads.activations[0].numpy()
        if method == "score_cam":  # then one masked image per channel of the layer
            wrapper.total = 1 + math.ceil(acts.shape[1] / params.score_cam_batch)
        with torch.no_grad():
            raw = cam.get_cam_image(x.detach(), layer, [ClassifierOutputTarget(target)], acts, grads, False)
    finally:
        cam.activations_and_grads.release()
    return torch.as_tensor(np.asarray(raw)[0])


def _smoothgrad(model: CaptureModel, x: torch.Tensor, method: str, target: int, params: AttributionParams,
                baseline, progress, cancel) -> AttributionResult:
    """SmoothGrad (captum's NoiseTunnel) around IG or Saliency: the map averaged over
    `smoothgrad_samples` copies of the image with Gaussian noise of σ = smoothgrad_stdev × its range."""
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    n, per = params.smoothgrad_samples, max(1, params.internal_batch_size)
    stdev = params.smoothgrad_stdev * float(x.max() - x.min())
    if SMOOTHGRAD[method] == "saliency":
        fwd = _Forward(model, math.ceil(n / per), progress, cancel)
        attr = NoiseTunnel(Saliency(fwd)).attribute(
            x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=n, nt_samples_batch_size=per,
            stdevs=stdev, target=target, abs=True)
        heat = attr[0].amax(0).detach().cpu().numpy()
        return AttributionResult(method, target, heat, heat, False)
    # IG: each batch of `per` noisy copies integrates over ig_steps points, `per` images per forward.
    batches = math.ceil(n / per)
    fwd = _Forward(model, batches * math.ceil(min(per, n) * params.ig_steps / per) + 1, progress, cancel)
    baseline = baseline_for(x, params.ig_baseline, **params.normalisation()) if baseline is None else baseline.detach()
    rule = ig_method(params.ig_steps)
    attr = NoiseTunnel(IntegratedGradients(fwd)).attribute(
        x, nt_type="smoothgrad", nt_samples=n, nt_samples_batch_size=per, stdevs=stdev, target=target,
        baselines=baseline, n_steps=params.ig_steps, method=rule, internal_batch_size=per)
    heat = attr[0].sum(0).detach().cpu().numpy()
    return AttributionResult(method, target, heat, heat, True, ig_method=rule)


def attribute_on_device(
    capture_model_for: Callable[[str], CaptureModel],
    x: torch.Tensor,
    method: str,
    target: int | None = None,
    *,
    device: str = "cpu",
    **kwargs,
) -> AttributionResult:
    """`attribute` on `device` (the classifier's: IG-50 takes milliseconds on a GPU, seconds on a CPU),
    with the model `capture_model_for(device)` gives (`Classifier.capture_model` does) and `x` moved
    there. When the GPU runs out of memory, the CPU computes it instead and the result's notice
    says so. Other arguments as for `attribute`."""
    import dataclasses

    import torch

    if device.startswith("cuda"):
        try:
            with torch.cuda.device(device):
                result = attribute(capture_model_for(device), x.to(device), method, target, **kwargs)
            return dataclasses.replace(result, device=device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            notice = f"{device} ran out of memory for {method.replace('_', ' ')}; computed on the CPU"
        result = attribute(capture_model_for("cpu"), x.to("cpu"), method, target, **kwargs)
        return dataclasses.replace(result, device="cpu", notice=notice)
    result = attribute(capture_model_for(device), x.to(device), method, target, **kwargs)
    return dataclasses.replace(result, device=device)


def _integrated_gradients(model: CaptureModel, x, baseline, target: int, steps: int, per: int,
                          progress: ProgressCallback | None, cancel: CancelToken | None) -> AttributionResult:
    """captum's IntegratedGradients in batches of `per` steps. The completeness gap is computed here
    from one forward of the image and the baseline together (captum's convergence delta would run two
    more): delta = Σ attributions − (f(x) − f(baseline)), its definition."""
    import torch
    from captum.attr import IntegratedGradients

    batches = math.ceil(steps / per)
    blocks = list(model.block_branches)
    if blocks:
        # Progress (and cancel) at every block, forward and backward: a CPU batch takes seconds.
        # Per block: each batch's forward and backward, and the gap's forward.
        ticker = _BlockTicker(model, blocks, 2 * batches + 1, progress, cancel)
        fwd = _Forward(model, 1, None, cancel)
    else:  # no blocks to count: one step per internal batch
        ticker = contextlib.nullcontext()
        fwd = _Forward(model, batches + 1, progress, cancel)
    rule = ig_method(steps)
    with ticker:
        attr = IntegratedGradients(fwd).attribute(
            x, baselines=baseline, target=target, n_steps=steps, method=rule, internal_batch_size=per)
        with torch.no_grad():
            ends = fwd(torch.cat([x, baseline]))[:, target].double()
    if blocks and progress is not None:
        progress(ticker.total, ticker.total)
    gap = float(ends[0] - ends[1])
    d = abs(float(attr.double().sum()) - gap)
    heat = attr[0].sum(0).detach().cpu().numpy()
    return AttributionResult("integrated_gradients", target, heat, heat, True, None, d,
                             d / abs(gap) if gap else math.inf, rule)


class _BlockTicker:
    """Progress and cancellation between blocks: a forward hook on each block's output probe counts
    the block, and a hook on that output's gradient counts it again on the way back. Only the calling
    thread's passes count (the probes are shared with captures running on other threads)."""

    def __init__(self, model: CaptureModel, blocks: list[str], passes: int,
                 progress: ProgressCallback | None, cancel: CancelToken | None):
        self.probes = [model.layer(b) for b in blocks]
        self.total = max(1, len(self.probes) * passes)
        self.progress, self.cancel = progress, cancel
        self.done = 0
        self.thread = threading.get_ident()
        self.handles: list = []

    def tick(self, *_) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        self.done = min(self.done + 1, self.total)
        if self.progress is not None:
            self.progress(self.done, self.total)

    def _forward(self, module, inputs, output) -> None:
        if threading.get_ident() != self.thread:
            return
        self.tick()
        if output.requires_grad:
            output.register_hook(self.tick)  # returns None: the gradient is left as it is

    def __enter__(self) -> _BlockTicker:
        if self.progress is not None or self.cancel is not None:
            self.handles = [p.register_forward_hook(self._forward) for p in self.probes]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


@dataclass(frozen=True)
class BranchEvidence:
    """Sum of |gradient × activation| on every branch output of every block, for one image and target.

    `shares()` normalises per block (which branches carry a block's evidence); `block_shares()` compares
    blocks (each block's part of the evidence summed over all blocks, for the graph's overlay).
    """

    model: str
    target: int
    sums: dict[str, list[float]]

    def shares(self) -> dict[str, list[float]]:
        return normalise_shares(self.sums)

    def block_shares(self) -> dict[str, float]:
        totals = {b: sum(v) for b, v in self.sums.items()}
        whole = sum(totals.values())
        return {b: (t / whole if whole > 0 else 0.0) for b, t in totals.items()}


def normalise_shares(sums: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each block's values divided by their sum (equal shares where a block's sum is zero)."""
    shares = {}
    for b, values in sums.items():
        total = sum(values)
        shares[b] = [v / total if total > 0 else 1.0 / len(values) for v in values]
    return shares


def branch_evidence(model: CaptureModel, x: torch.Tensor, target: int | None = None,
                    blocks: list[str] | None = None, *, progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None) -> BranchEvidence:
    """For each block, |gradient × activation| of the target summed over each branch's output.

    One forward and one backward for all blocks. Progress counts blocks passed (forward, then
    backward; plus a first forward that finds the top-1 class when `target` is None); `cancel` is
    checked at each block.
    """
    import torch
    from captum.attr import LayerGradientXActivation

    blocks = blocks if blocks is not None else list(model.block_branches)
    keys = [(b, k) for b in blocks for k in range(model.block_branches[b]) if (b, k) in model.probe_of]
    layers = [model.layer(b, k) for b, k in keys]
    model.eval()
    if cancel is not None:
        cancel.raise_if_cancelled()
    if not keys:  # no branches to weigh (AlexNet, a plain conv stack): captum refuses an empty layer list
        if target is None:
            with torch.no_grad():
                target = int(model(x).argmax(1))
        if progress is not None:
            progress(1, 1)
        return BranchEvidence(getattr(model, "graph_name", ""), int(target), {b: [] for b in blocks})
    passes = 2 if target is not None else 3
    with _BlockTicker(model, blocks, passes, progress, cancel) as ticker:
        if target is None:
            with torch.no_grad():
                target = int(model(x).argmax(1))
        attrs = LayerGradientXActivation(model, layers).attribute(x.detach(), target=target)
    if cancel is not None:
        cancel.raise_if_cancelled()
    if progress is not None and ticker.done < ticker.total:
        progress(ticker.total, ticker.total)
    if not isinstance(attrs, (list, tuple)):
        attrs = [attrs]
    sums: dict[str, list[float]] = {b: [0.0] * model.block_branches[b] for b in blocks}
    for (b, k), a in zip(keys, attrs):
        sums[b][k] = float(a.detach().abs().sum())
    return BranchEvidence(getattr(model, "graph_name", ""), int(target), sums)


def branch_shares(model: CaptureModel, x: torch.Tensor, target: int | None = None,
                  blocks: list[str] | None = None, *, progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None) -> dict[str, list[float]]:
    """For each block, the share of the target's evidence flowing through each branch.

    Gradient × activation on every branch output (one forward and one backward for all blocks),
    summed in absolute value per branch and normalised per block: non-negative, summing to 1.
    """
    return branch_evidence(model, x, target, blocks, progress=progress, cancel=cancel).shares()


def shares_csv(shares: dict[str, list[float]], labels: dict[str, list[str]] | None = None) -> str:
    """Branch shares of several blocks as CSV (each branch by its 1-based number, as Details shows it)."""
    lines = ["block,branch_number,label,share"]
    for block, values in shares.items():
        for k, v in enumerate(values):
            label = (labels or {}).get(block, [""] * len(values))[k].replace('"', "'")
            lines.append(f'{block},{branch_number(k)},"{label}",{v:.6g}')
    return "\n".join(lines) + "\n"
