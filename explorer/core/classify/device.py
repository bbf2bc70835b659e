"""Where a classifier computes: device resolution and the network it runs on each device.

`resolve_device` turns 'auto'/'cuda:N'/'cpu' into a device this torch build can run (and turns TF32
off for a GPU); `DeviceNetworks` keeps one copy of the loaded model per device (batch norms folded into
their convolutions, channels-last, unless `optimize` is off), the CUDA graph that batch-1 forwards
replay (the forward, the softmax and the top-k in one replay), and the `CaptureModel` over each copy. torch is imported when these are used, not at import.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any

from explorer.core.text import first_line

#: CUDA graph capture is process-wide (work launched from another thread while a stream captures
#: breaks the capture): one capture at a time in the whole process, whatever the classifier.
_GRAPH_CAPTURE_LOCK = threading.Lock()
#: How many classes the batch-1 CUDA graph ranks (the classifier's default top-k); a larger k ranks the
#: graph's probabilities after the replay.
GRAPH_TOP_K = 5


@dataclass
class GraphedForward:
    """A captured CUDA graph of the batch-1 forward: `replay()` reads `static_in` and writes the logits,
    the softmax probabilities (float32) and `top`, a (2, k) float64 tensor of the k best probabilities and
    their class indices (exact in float64), so that one copy brings the answer to the CPU. `probs` and
    `top` are None for a network whose output is not class scores."""

    graph: Any
    static_in: Any
    logits: Any
    probs: Any = None
    top: Any = None


class DeviceUnavailableError(RuntimeError):
    """The requested device does not exist on this machine."""


def resolve_device(device: str = "auto") -> str:
    """'auto' → 'cuda' when CUDA is usable, else 'cpu'; 'cuda'/'cuda:N' must exist and be a GPU
    this torch build has kernels for (DeviceUnavailableError otherwise). Every path that computes on
    a GPU comes through here, so a CUDA answer also turns TF32 off (`use_exact_float32_on_cuda`):
    maps, curves and logits on the GPU are then the CPU's to float32 rounding."""
    resolved = _resolve_device(device)
    if resolved.startswith("cuda"):
        use_exact_float32_on_cuda()
    return resolved


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() and cuda_unsupported_reason() is None else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError("CUDA is not available on this machine")
        try:
            index = torch.device(device).index
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; use auto, cuda, cuda:N or cpu") from None
        if index is not None and index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"there is no {device}: {torch.cuda.device_count()} CUDA device(s)")
        reason = cuda_unsupported_reason(device)
        if reason is not None:
            raise DeviceUnavailableError(reason)
        return device
    raise ValueError(f"unknown device {device!r}; use auto, cuda or cpu")


def cuda_unsupported_reason(device: str = "cuda") -> str | None:
    """Why this torch build cannot run kernels on `device`, or None. `torch.cuda.is_available()` is
    true on a GPU older than the wheel's architectures (torch only warns), and the first kernel then
    fails. A GPU runs an `sm_XY` binary of its own major version and minor ≥ Y, and any `compute_XY`
    (PTX, compiled at load) with XY ≤ its capability."""
    import torch

    arch_list = torch.cuda.get_arch_list()
    if torch.version.hip is not None or not arch_list:  # unknown: let the first kernel tell
        return None
    index = torch.device(device).index
    major, minor = torch.cuda.get_device_capability(index)
    cc = 10 * major + minor
    for arch in arch_list:
        kind, _, version = arch.partition("_")
        v = int(version.rstrip("af"))
        if kind == "sm":  # sm_90a runs on that exact GPU only; sm_100f on its family, like sm_100
            runs = v == cc if version.endswith("a") else v // 10 == major and v <= cc
        else:  # compute_XY: PTX, which the driver compiles for this GPU
            runs = not version.endswith(("a", "f")) and v <= cc
        if runs:
            return None
    return (f"{torch.cuda.get_device_name(index)} (compute capability sm_{cc}) is not supported by this torch "
            f"build, which has kernels for {' '.join(arch_list)}")


def use_exact_float32_on_cuda() -> None:
    """Full float32 convolutions and matrix products on CUDA (cuDNN uses TF32 by default, ~1e-3 of
    relative error): the GPU's logits then match the CPU's to ~1e-5. Process-wide torch flags."""
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def _ranks_scores(logits) -> bool:
    """Whether a network output is class scores (N, classes), which the graph ranks."""
    return logits.dim() == 2


def _ranked(logits):
    """(probabilities, (2, k) float64 top-k): what an eager batch computes from its logits."""
    probs = logits.float().softmax(dim=1)
    values, indices = probs.topk(min(GRAPH_TOP_K, probs.shape[1]), dim=1)
    return probs, torch_stack_top(values, indices)


def torch_stack_top(values, indices):
    """A (1, k) top-k as one (2, k) float64 tensor: values and class indices, one copy to the CPU."""
    import torch

    return torch.stack([values[0].double(), indices[0].double()])


def fold_batch_norms(module):
    """Fold every conv → batch-norm pair of the Inception `BasicConv2d` blocks (in place, eval only)."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for m in module.modules():
        conv, bn = getattr(m, "conv", None), getattr(m, "bn", None)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            m.conv = fuse_conv_bn_eval(conv, bn)
            m.bn = torch.nn.Identity()
    return module


class DeviceNetworks:
    """The loaded model as a classifier runs it: one copy per device (the loaded model stays as it
    is, on the CPU), the CUDA graph of batch-1 forwards, and a `CaptureModel` over each copy.

    `device` is where the classifier computes now; `fall_back_to_cpu` moves it there for good.
    Not thread-safe on its own: the classifier's lock guards every call."""

    def __init__(self, module, device: str, *, optimize: bool, notices: list[str], graph=None, switches=None):
        """module: the loaded network (never changed). notices: the classifier's list, appended to.
        switches: branches switched off (explorer.core.attribution.knockout.BranchSwitches: `install(capture)`,
        `active`), installed in every capture model; while any is off, every forward runs through the capture
        model of its device (no CUDA graph replay), so that batches classify with the network on screen too."""
        self.source_module = module
        self.switches = switches
        self.device = device
        self.optimize = optimize
        self.notices = notices
        #: The block graph that capture models probe (None: captures are unavailable).
        self.graph = graph
        #: Why no CaptureModel could be built over the device module (None: none tried or it worked).
        self.capture_error: str | None = None
        self.modules: dict[str, Any] = {}
        self.capture_models: dict[str, Any] = {}
        #: (CUDAGraph, static input, static output) for batch-1 forwards, or None.
        self.cuda_graph: tuple[Any, Any, Any] | None = None

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def module(self, device: str):
        """The network for `device`: a copy, BN-folded and channels-last when `optimize`."""
        if device not in self.modules:
            import torch

            module = copy.deepcopy(self.source_module).eval()
            if self.optimize:
                module = fold_batch_norms(module).to(memory_format=torch.channels_last)
            self.modules[device] = module.to(device)
        return self.modules[device]

    def set_graph(self, graph) -> None:
        self.graph, self.capture_error = graph, None
        self.capture_models.clear()

    def capture_model(self, device: str):
        """The `CaptureModel` over `device`'s network, traced once per device (RuntimeError when
        there is no graph or the network does not match it)."""
        cm = self.capture_models.get(device)
        if cm is None:
            if self.graph is None:
                raise RuntimeError("no block graph to capture activations with")
            from explorer.core.graph.capture import CaptureModel

            cm = CaptureModel(self.module(device), self.graph)
            if self.switches is not None:
                self.switches.install(cm)
            self.capture_models[device] = cm
        return cm

    def switched(self) -> bool:
        """Whether branches are switched off now (forwards then run through the capture model)."""
        return self.switches is not None and self.graph is not None and self.switches.active

    def build_capture_model(self) -> None:
        """Build the current device's capture model now; a failure is remembered in `capture_error`
        and said in a notice (classification works without it)."""
        if self.graph is not None and self.capture_error is None:
            import torch

            try:
                self.capture_model(self.device)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # untraceable, or not the graph: classification works; the
                # activation views will say why not (fx raises TraceError, a ValueError, and others)
                self.capture_error = first_line(e)
                self.notices.append(f"Activations unavailable: {self.capture_error}")

    def capture_cuda_graph(self, crop_size: int) -> bool:
        """Run the network eagerly on the current GPU, then capture a CUDA graph of its batch-1
        forward followed by the softmax and the top GRAPH_TOP_K (the same operations as an eager
        batch, so the same numbers); whether one is ready (a capture that fails leaves eager forwards,
        with a notice)."""
        import torch

        module = self.module(self.device)
        p = next(module.parameters())
        static_in = torch.zeros(1, 3, crop_size, crop_size, device=p.device, dtype=p.dtype)
        if self.optimize:
            static_in = static_in.contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode():
            with torch.cuda.stream(side):
                for _ in range(3):  # eager first: a GPU that cannot run the network fails here
                    out = module(static_in)
                    ranks = _ranks_scores(out)
                    if ranks:
                        _ranked(out)
            torch.cuda.current_stream(self.device).wait_stream(side)
            with _GRAPH_CAPTURE_LOCK:
                try:
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        logits = module(static_in)
                        probs, top = _ranked(logits) if ranks else (None, None)
                    torch.cuda.synchronize(self.device)
                except torch.cuda.OutOfMemoryError:
                    raise
                except RuntimeError as e:  # capture unsupported: eager forwards still work
                    self.cuda_graph = None
                    self.notices.append(f"CUDA graph capture failed, running eagerly: {first_line(e)}")
                    return False
        self.cuda_graph = GraphedForward(graph, static_in, logits, probs, top)
        return True

    def replays(self, x, device: str) -> bool:
        """Whether a forward of the batch `x` on `device` replays the captured graph: one image, on
        the GPU the graph was captured on."""
        return (self.cuda_graph is not None and self.on_cuda and device == self.device and x.shape[0] == 1
                and not self.switched())

    def forward(self, x, device: str):
        """Logits of the batch `x` (already on `device`, in the network's memory format): the CUDA
        graph's replay for one image on a GPU when one is captured, else the network's forward."""
        if self.replays(x, device):
            g = self.cuda_graph
            g.static_in.copy_(x)
            g.graph.replay()
            return g.logits.clone()
        if self.switched():
            return self.capture_model(device)(x)
        return self.module(device)(x)

    def top_of_one(self, x, k: int) -> tuple[list[float], list[int]] | None:
        """The k best probabilities and their classes for one image `x` ((1, 3, H, W) or (3, H, W), on
        the GPU or the CPU, any memory format): one copy into the graph's input, one replay (forward,
        softmax, top-k), one copy of the answer to the CPU, which is the only wait for the GPU. None
        when no graph ranks class scores (eager then)."""
        g = self.cuda_graph
        if g is None or g.top is None:
            return None
        g.static_in.copy_(x if x.dim() == 4 else x[None])
        g.graph.replay()
        if k <= g.top.shape[1]:
            top = g.top[:, :k].cpu()
        else:  # more than the graph ranks: rank its probabilities (still one replay)
            values, indices = g.probs.topk(min(k, g.probs.shape[1]), dim=1)
            top = torch_stack_top(values, indices).cpu()
        return top[0].tolist(), [int(i) for i in top[1].tolist()]

    def fall_back_to_cpu(self, reason: str) -> None:
        """Drop every GPU copy and compute on the CPU from now on, saying why in a notice."""
        import torch

        self.cuda_graph = None
        self.modules = {k: v for k, v in self.modules.items() if not k.startswith("cuda")}
        self.capture_models = {k: v for k, v in self.capture_models.items() if not k.startswith("cuda")}
        torch.cuda.empty_cache()
        self.device = "cpu"
        self.notices.append(f"{reason}; classifying on the CPU from now on")
