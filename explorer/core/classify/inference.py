"""Classify images with a loaded model: files in, top-k ImageNet classes out, bad files reported.

Preprocessing is the weights' own torchvision transform (`weights.transforms()`: resize of the short
side with antialiased filtering, centre crop, scaling to [0, 1], normalisation), applied to a PIL image
on the CPU and to a uint8 tensor on the GPU.

- CPU, by default: exactly the reference pipeline (PIL decode, EXIF orientation, the transform on the
  PIL image), so probabilities match a user's own torchvision script. Speed comes from doing that
  computation with less waste: no copies of the decoded image (the reference's `exif_transpose` and
  `convert("RGB")` copy it twice), batches decoded and preprocessed on a thread pool (PIL releases the
  GIL) while the previous batch's forward runs, and the network with each batch norm folded into its
  convolution, in channels-last layout (same maths, different rounding: logits agree with the plain
  model to ~1e-5 of their scale).
- CPU, opt-in (`fast_decode`): a large JPEG is decoded at a reduced DCT scale (PIL's draft mode),
  never below the size the transform resizes to, then resized to exactly that size with the
  transform's filter: several times faster, but the input differs from the reference by about half a
  grey level on average, so each result so decoded carries `FAST_DECODE_NOTICE`.
- CUDA: large JPEGs (and greyscale or 4:4:4 ones) are decoded by nvjpeg (torchvision's
  `decode_jpegs_cuda` operator), the rest by PIL; the image is resized, cropped and normalised on the
  device by the same transform object, and batch-1 forwards replay a CUDA graph captured by
  `warm_up()`. The network input is within a grey level of torchvision's PIL reference on average
  (the tensor resize rounds differently; nvjpeg's chroma differs at sharp colour edges, by up to 5
  levels there), like the CPU's fast decode, and each result made on the GPU says so
  (`GPU_INPUT_NOTICE`). Convolutions and
  matrix products run in full float32 (TF32 off: the same input gives the CPU's logits to ~1e-5).
  Running out of GPU memory, or a GPU this torch build cannot run, moves the classifier to the CPU
  with a notice.

A file that cannot be read never stops a batch: its result carries the error message instead.
`classify_captured` classifies one image for the window with a single forward through a
`CaptureModel` over the same device copy, keeping every branch's output on the device.
torch is imported when a `Classifier` is made, not when this module is.
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Union

from explorer.core.cancel import CancelToken, ProgressCallback
from explorer.core.classify.images import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    LoadedImage,
    check_resize,
    exif_orientation,
    load_image,
    open_image,
    read_bytes,
    resized_size,
    to_rgb,
)

#: Images per forward pass, by device type.
DEFAULT_BATCH_SIZE = {"cuda": 64, "cpu": 8}
#: Most threads that decode and preprocess the images of a CPU batch (each holds one decoded image:
#: 36 MB for a 12-megapixel photo).
MAX_DECODE_WORKERS = 8
#: The label of every result whose JPEG was decoded at a reduced scale (`fast_decode`).
FAST_DECODE_NOTICE = "fast decode: within ~0.5 grey levels"
#: Said by every result classified on a GPU: nvjpeg and the tensor resize round differently from PIL.
GPU_INPUT_NOTICE = "GPU decode and resize: within 1 grey level of the PIL reference on average, up to 5 at sharp colour edges"
#: nvjpeg decodes a chroma-subsampled JPEG only when its short side is at least this many times the
#: transform's resize size (see `Classifier._nvjpeg_suits`); PIL decodes the smaller ones. 8: a 12 MP
#: photo still goes to nvjpeg for GoogLeNet and Inception v3.
NVJPEG_MIN_SCALE = 8
#: Most pixels nvjpeg decodes in one call (the decoded images of one call are alive together:
#: 3 bytes a pixel, so about 0.8 GB).
DECODE_PIXELS_PER_CALL = 256_000_000

#: CUDA graph capture is process-wide (work launched from another thread while a stream captures
#: breaks the capture): one capture at a time in the whole process, whatever the classifier.
_GRAPH_CAPTURE_LOCK = threading.Lock()

ImageInput = Union[str, os.PathLike, bytes, LoadedImage, Any]  # Any: a PIL image


class DeviceUnavailableError(RuntimeError):
    """The requested device does not exist on this machine."""


class NotAClassifierError(ValueError):
    """The model outputs a feature map, not a vector of class scores: there is no top-k to give."""


def _class_scores(logits):
    """`logits` if they are (N, classes); NotAClassifierError naming the shape otherwise."""
    if logits.dim() != 2:
        shape = "×".join(map(str, logits.shape[1:]))
        raise NotAClassifierError(f"the model's output is a {shape} map, not class scores")
    return logits


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    prob: float


@dataclass
class ClassificationResult:
    """The outcome for one input: its top-k classes, or the reason it could not be classified."""

    source: str
    top: list[Prediction] = field(default_factory=list)
    #: decode (read + decode + RGB), preprocess (resize, crop, normalise), forward (the batch's
    #: forward pass shared equally among its images), total — milliseconds.
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    device: str = "cpu"
    image_size: tuple[int, int] | None = None  # upright (width, height) of the original
    notice: str | None = None  # e.g. a fallback from CUDA to the CPU while this batch ran

    @property
    def ok(self) -> bool:
        return self.error is None

    def add_notice(self, text: str) -> None:
        """Add `text` to `notice` (several can apply: a fast decode and a fallback to the CPU)."""
        if self.notice is None:
            self.notice = text
        elif text not in self.notice.split("; "):
            self.notice = f"{self.notice}; {text}"

    def fill(self, probs: Sequence[float], indices: Sequence[int], categories: Sequence[str]) -> None:
        """Set the top-k from one row of `topk` (probabilities and class indices, best first)."""
        self.top = [Prediction(int(i), _category(categories, int(i)), float(v)) for v, i in zip(probs, indices)]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: a non-finite probability (NaN logits) becomes None, JSON's null."""
        d: dict[str, Any] = {
            "path": self.source,
            "top": [{"index": p.index, "label": p.label, "prob": _finite_or_none(p.prob)} for p in self.top],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "device": self.device,
        }
        if self.image_size is not None:
            d["image_size"] = list(self.image_size)
        if self.error is not None:
            d["error"] = self.error
        if self.notice is not None:
            d["notice"] = self.notice
        return d


@dataclass
class CapturedClassification:
    """One image classified by a forward that also kept every branch's output (`classify_captured`).

    Everything but `result` is None when the image could not be read (`result.error` says why).
    """

    result: ClassificationResult
    #: The `Capture` of that forward: logits and every probed tensor, on the classifier's device.
    capture: Any = None
    #: The network input, (1, 3, crop, crop) on the device, as the forward received it.
    x: Any = None
    #: The network input de-normalised: (crop, crop, 3) uint8 numpy, the picture under overlays.
    rgb: Any = None
    #: The upright RGB picture as decoded, a PIL image (a CUDA decode is shrunk to `display_max`
    #: on the device before it crosses to the CPU).
    picture: Any = None


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


class Classifier:
    """Classifies images with one loaded model on one device.

    `classify` runs a whole list and returns one result per input, in order; `iter_classify` yields
    each batch's results as soon as they are ready (for a table that fills while a folder runs).
    One call at a time: concurrent calls wait for each other.
    """

    def __init__(
        self,
        loaded,
        device: str = "auto",
        *,
        fast_decode: bool = False,
        optimize: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        batch_size: int | None = None,
        graph=None,
    ):
        """loaded: a `LoadedModel`. fast_decode: decode big JPEGs at a reduced scale on the CPU path
        (approximate, labelled in each result; the attribute can be changed later).
        optimize: fold batch norms and use channels-last (False: the model exactly as loaded).
        graph: the model's `BlockGraph`, needed by `classify_captured` (or `set_graph` later)."""
        self.loaded = loaded
        self.transforms = loaded.transforms()
        self.resize_size = int(self.transforms.resize_size[0])
        self.crop_size = int(self.transforms.crop_size[0])
        self.categories = list(loaded.categories)
        self.device = resolve_device(device)
        #: Decode big JPEGs at a reduced DCT scale on the CPU (read at each image).
        self.fast_decode = fast_decode
        #: Threads that decode and preprocess a CPU batch (None: one per CPU core, at most
        #: MAX_DECODE_WORKERS).
        self.decode_workers: int | None = None
        self.optimize = optimize
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        #: Things the user should know about this classifier (e.g. a fallback to the CPU).
        self.notices: list[str] = []
        if device == "auto" and self.device == "cpu":
            import torch

            if torch.cuda.is_available():
                self.notices.append(f"{cuda_unsupported_reason()}; classifying on the CPU")
        self._modules: dict[str, Any] = {}
        self._graph: tuple[Any, Any, Any] | None = None
        #: The block graph that `classify_captured` probes (None: captures are unavailable).
        self.graph = graph
        #: Why no CaptureModel could be built over the device module (None: none tried or it worked).
        self.capture_error: str | None = None
        self._capture_models: dict[str, Any] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ public API

    @property
    def graph_ready(self) -> bool:
        """Whether batch-1 forwards replay a captured CUDA graph."""
        return self._graph is not None

    @property
    def module(self):
        """The network as this classifier runs it: a copy on its device (BN-folded, channels-last
        unless `optimize` is off). Plain classification and `classify_captured` both run it."""
        with self._lock:
            return self._module(self.device)

    @property
    def can_capture(self) -> bool:
        """Whether `classify_captured` can run: a block graph is set and no capture build has failed."""
        return self.graph is not None and self.capture_error is None

    def set_graph(self, graph) -> None:
        """Probe `graph` (the loaded model's `BlockGraph`) in `classify_captured` from now on."""
        with self._lock:
            self.graph, self.capture_error = graph, None
            self._capture_models.clear()

    def capture_model(self, device: str | None = None):
        """The `CaptureModel` over this classifier's own device module, traced once per device: it
        shares the module's (folded) parameters, so a capture costs one forward of that network.
        RuntimeError when there is no graph or the network does not match it."""
        with self._lock:
            device = device or self.device
            cm = self._capture_models.get(device)
            if cm is None:
                if self.graph is None:
                    raise RuntimeError("no block graph to capture activations with")
                from explorer.core.graph.capture import CaptureModel

                cm = self._capture_models[device] = CaptureModel(self._module(device), self.graph)
            return cm

    def warm_up(self) -> bool:
        """Prepare the device path: build the device copy of the model, initialise nvjpeg and capture
        a CUDA graph for batch-1 forwards. Slow (seconds): run it in a worker. No-op on the CPU
        apart from building the optimised model; returns whether a CUDA graph is ready.

        Running out of GPU memory, or any CUDA failure (a GPU the wheel has no kernels for, say),
        moves the classifier to the CPU with a notice; a graph that cannot be captured leaves eager
        forwards on the GPU."""
        with self._lock:
            if self._on_cuda:
                import torch

                try:
                    with torch.cuda.device(self.device):
                        return self._warm_up_cuda()
                except torch.cuda.OutOfMemoryError:
                    self._fall_back_to_cpu("CUDA ran out of memory while warming up")
                except RuntimeError as e:  # torch.AcceleratorError and kernels that fail with their own
                    self._fall_back_to_cpu(f"CUDA failed while warming up ({_first_line(e)})")
            self._module(self.device)
            self._build_capture_model()
            return False

    def _build_capture_model(self) -> None:
        if self.graph is not None and self.capture_error is None:
            import torch

            try:
                self.capture_model()
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # untraceable, or not the graph: classification works; the
                # activation views will say why not (fx raises TraceError, a ValueError, and others)
                self.capture_error = _first_line(e)
                self.notices.append(f"Activations unavailable: {self.capture_error}")

    def _warm_up_cuda(self) -> bool:
        """warm_up on the classifier's GPU (the current device): errors but capture's propagate."""
        import torch

        module = self._module(self.device)
        self._build_capture_model()
        try:
            self._decode_jpegs_cuda([_tiny_jpeg()])
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as e:  # PIL decodes JPEGs that nvjpeg refuses: a notice, not a failure
            self.notices.append(f"nvjpeg unavailable, JPEGs are decoded on the CPU: {_first_line(e)}")
        p = next(module.parameters())
        static_in = torch.zeros(1, 3, self.crop_size, self.crop_size, device=p.device, dtype=p.dtype)
        if self.optimize:
            static_in = static_in.contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode():
            with torch.cuda.stream(side):
                for _ in range(3):  # eager first: a GPU that cannot run the network fails here
                    module(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            with _GRAPH_CAPTURE_LOCK:
                try:
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        static_out = module(static_in)
                    torch.cuda.synchronize(self.device)
                except torch.cuda.OutOfMemoryError:
                    raise
                except RuntimeError as e:  # capture unsupported: eager forwards still work
                    self._graph = None
                    self.notices.append(f"CUDA graph capture failed, running eagerly: {_first_line(e)}")
                    return False
        self._graph = (graph, static_in, static_out)
        return True

    def classify(
        self,
        inputs: Sequence[ImageInput],
        *,
        top: int = 5,
        batch_size: int | None = None,
        names: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> list[ClassificationResult]:
        """Classify every input (paths, file bytes, PIL images); one result each, in order.

        Raises Cancelled when `cancel` is set (between images)."""
        results: list[ClassificationResult] = []
        for batch in self.iter_classify(
            inputs, top=top, batch_size=batch_size, names=names, progress=progress, cancel=cancel
        ):
            results.extend(batch)
        return results

    def iter_classify(
        self,
        inputs: Sequence[ImageInput],
        *,
        top: int = 5,
        batch_size: int | None = None,
        names: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[list[ClassificationResult]]:
        """Like `classify`, yielding each batch's results (in input order) when it is done."""
        if top < 1:
            raise ValueError(f"top must be at least 1, not {top}")
        inputs = list(inputs)
        labels = list(names) if names is not None else [_label(x, i) for i, x in enumerate(inputs)]
        if len(labels) != len(inputs):
            raise ValueError("names must have one entry per input")
        total = len(inputs)
        done = 0
        if progress:
            progress(0, total)
        start = 0
        # On the CPU, each batch's images are decoded and preprocessed on a thread pool, queued one
        # batch ahead: the next batch decodes while this one's forward runs.
        pool: ThreadPoolExecutor | None = None
        queued: dict[int, Future] = {}
        try:
            while start < total:
                n = batch_size or self.batch_size or DEFAULT_BATCH_SIZE["cuda" if self._on_cuda else "cpu"]
                stop = min(start + n, total)
                chunk = list(zip(inputs[start:stop], labels[start:stop]))
                with self._lock:
                    if self._on_cuda:
                        results = self._classify_batch(chunk, top, cancel)
                    else:
                        if pool is None:
                            pool = ThreadPoolExecutor(self._decode_worker_count(), thread_name_prefix="decode")
                        for i in range(start, min(stop + n, total)):
                            if i not in queued:
                                queued[i] = pool.submit(self._prepare_cpu, inputs[i], labels[i])
                        prepared = [queued.pop(i) for i in range(start, stop)]
                        results = self._classify_batch_cpu(chunk, top, cancel, prepared)
                start = stop
                done += len(chunk)
                if progress:
                    progress(done, total)
                yield results
        finally:
            if pool is not None:  # cancelled or abandoned: drop what has not started, wait for the rest
                pool.shutdown(wait=True, cancel_futures=True)

    def _decode_worker_count(self) -> int:
        if self.decode_workers is not None:
            return max(1, self.decode_workers)
        return max(1, min(MAX_DECODE_WORKERS, os.cpu_count() or 1))

    def classify_captured(
        self,
        source: ImageInput,
        *,
        name: str | None = None,
        top: int = 5,
        display_max: int | None = None,
        cancel: CancelToken | None = None,
    ) -> CapturedClassification:
        """Classify one image with ONE forward through `capture_model()` that also keeps every
        branch's output: the top-k and the capture come from the same logits. The image is decoded
        once (PIL on the CPU, nvjpeg on CUDA) and the tensors stay on the device; only the top-k,
        the network input's RGB and the picture (at most `display_max` pixels on its long side when
        decoded on the GPU) cross to the CPU. A file that cannot be read gives `result.error`;
        RuntimeError when no capture model can be built; Cancelled before the forward."""
        if top < 1:
            raise ValueError(f"top must be at least 1, not {top}")
        label = name if name is not None else _label(source, 0)
        with self._lock:
            if self._on_cuda:
                import torch

                try:
                    with torch.cuda.device(self.device):
                        return self._classify_captured(source, label, top, display_max, cancel)
                except torch.cuda.OutOfMemoryError:
                    self._fall_back_to_cpu("CUDA ran out of memory on one image")
                except torch.AcceleratorError as e:
                    self._fall_back_to_cpu(f"CUDA failed ({_first_line(e)})")
                out = self._classify_captured(source, label, top, display_max, cancel)
                out.result.add_notice(self.notices[-1])
                return out
            return self._classify_captured(source, label, top, display_max, cancel)

    def _classify_captured(self, source, label: str, top: int, display_max, cancel) -> CapturedClassification:
        import torch

        dev = self.device
        cm = self.capture_model(dev)  # before the image: a capture that cannot be built fails early
        r = ClassificationResult(source=label, device=dev)
        raw = None
        t0 = time.perf_counter()
        try:
            if self._on_cuda:
                raw, size, picture = self._decode_on_device(source, label)
                torch.cuda.synchronize(dev)
            else:
                li = self._load_cpu(source, label)
                size, picture = li.size, li.image
        except ImageLoadError as e:
            r.error = e.reason
            r.timings_ms = {"decode": _ms(t0)}
            return CapturedClassification(result=r)
        t1 = time.perf_counter()
        if raw is not None:
            x = self.transforms(raw.expand(3, -1, -1) if raw.shape[0] == 1 else raw)
            torch.cuda.synchronize(dev)
        else:
            x = self._preprocess_pil(li)
        r.image_size = size
        r.timings_ms = {"decode": (t1 - t0) * 1e3, "preprocess": _ms(t1)}
        if raw is None and li.draft_scale > 1:
            r.add_notice(FAST_DECODE_NOTICE)
        if raw is not None:
            r.add_notice(GPU_INPUT_NOTICE)
        if cancel is not None:
            cancel.raise_if_cancelled()
        t2 = time.perf_counter()
        # no_grad, not inference_mode: the capture and the input are handed to views and to
        # gradient methods, which cannot use inference tensors.
        with torch.no_grad():
            xb = x[None].to(dev)
            if self.optimize:
                xb = xb.contiguous(memory_format=torch.channels_last)
            capture = cm.capture(xb)
            probs = _class_scores(capture.logits).float().softmax(dim=1)
            values, indices = probs.topk(min(top, probs.shape[1]), dim=1)
            r.fill(values[0].tolist(), indices[0].tolist(), self.categories)
        r.timings_ms["forward"] = _ms(t2)
        r.timings_ms["total"] = sum(r.timings_ms.values())
        with torch.no_grad():
            rgb = self.input_rgb(xb[0])
            if raw is not None and picture is None:
                picture = _display_picture(raw, display_max)
        return CapturedClassification(result=r, capture=capture, x=xb, rgb=rgb, picture=picture)

    def input_rgb(self, x):
        """A normalised (3, H, W) network input as the (H, W, 3) uint8 picture it was made from."""
        import torch

        mean = torch.tensor(self.transforms.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.transforms.std, device=x.device).view(3, 1, 1)
        rgb = ((x.float() * std + mean).clamp(0, 1) * 255).round().byte()
        return rgb.permute(1, 2, 0).contiguous().cpu().numpy()

    def preprocess(self, image: ImageInput) -> Any:
        """The network input for one image on the CPU path: a (3, crop, crop) float tensor."""
        li = self._load_cpu(image, "<image>")
        return self._preprocess_pil(li)

    # ------------------------------------------------------------------ batches

    @property
    def _on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def _classify_batch(self, chunk, top: int, cancel: CancelToken | None) -> list[ClassificationResult]:
        if self._on_cuda:
            import torch

            try:
                with torch.cuda.device(self.device):
                    results = self._classify_batch_cuda(chunk, top, cancel)
                for r in results:
                    if r.ok:
                        r.add_notice(GPU_INPUT_NOTICE)
                return results
            except torch.cuda.OutOfMemoryError:
                self._fall_back_to_cpu(f"CUDA ran out of memory on a batch of {len(chunk)}")
            except torch.AcceleratorError as e:  # e.g. no kernel for this GPU: the CPU still works
                self._fall_back_to_cpu(f"CUDA failed ({_first_line(e)})")
            results = self._classify_batch_cpu(chunk, top, cancel)
            for r in results:
                r.add_notice(self.notices[-1])
            return results
        return self._classify_batch_cpu(chunk, top, cancel)

    def _classify_batch_cpu(self, chunk, top, cancel, prepared: list[Future] | None = None):
        """The batch on the CPU: each image loaded and preprocessed (`prepared`: futures of
        `_prepare_cpu` for the chunk, already queued on a pool; None: here, one by one), then one
        forward of those that could be read."""
        results: list[ClassificationResult] = []
        tensors, slots = [], []
        for i, (src, label) in enumerate(chunk):
            if cancel is not None:
                cancel.raise_if_cancelled()
            r, resized = prepared[i].result() if prepared is not None else self._prepare_cpu(src, label)
            results.append(r)
            x = self._finish_cpu(r, resized) if resized is not None else None
            if x is not None:
                tensors.append(x)
                slots.append(r)
        if tensors:
            if cancel is not None:
                cancel.raise_if_cancelled()
            self._forward_and_fill(tensors, slots, top, "cpu")
        return results

    def _prepare_cpu(self, src, label: str) -> tuple[ClassificationResult, Any]:
        """Load one image and resize it as the transform does: its result (with the error, if any)
        and the resized PIL image (None when it cannot be classified). PIL work only, which releases
        the GIL: it runs on the decode threads (a torch operation there would start one more OpenMP
        team per thread, spinning beside the forward's)."""
        r = ClassificationResult(source=label, device="cpu")
        t0 = time.perf_counter()
        try:
            li = self._load_cpu(src, label)
        except ImageLoadError as e:
            r.error = e.reason
            r.timings_ms = {"decode": _ms(t0)}
            return r, None
        t1 = time.perf_counter()
        try:
            resized = self._resized_pil(li)
        except (MemoryError, OSError, ValueError) as e:  # this image only: the batch goes on
            r.error = f"cannot preprocess: {_first_line(e)}"
            r.timings_ms = {"decode": (t1 - t0) * 1e3}
            return r, None
        r.image_size = li.size
        r.timings_ms = {"decode": (t1 - t0) * 1e3, "preprocess": _ms(t1)}
        if li.draft_scale > 1:
            r.add_notice(FAST_DECODE_NOTICE)
        return r, resized

    def _finish_cpu(self, r: ClassificationResult, resized):
        """The rest of the transform on a `_prepare_cpu` image (crop, tensor, normalisation), on the
        calling thread; None, with `r.error` set, when it fails."""
        t0 = time.perf_counter()
        try:
            x = self.transforms(resized)
        except (MemoryError, RuntimeError, ValueError) as e:
            r.error = f"cannot preprocess: {_first_line(e)}"
            r.timings_ms = {"decode": r.timings_ms["decode"]}
            return None
        r.timings_ms["preprocess"] += _ms(t0)
        return x

    def _classify_batch_cuda(self, chunk, top, cancel) -> list[ClassificationResult]:
        """The batch on the GPU: JPEG headers read on the CPU, nvjpeg decodes in calls of at most
        DECODE_PIXELS_PER_CALL pixels, each decoded image released once resized. Stages are timed
        with CUDA events, read once the forward's top-k has reached the CPU: no synchronisation
        between images."""
        import torch

        dev = self.device
        results: list[ClassificationResult] = []
        jpegs: list[_Jpeg] = []
        others: list[tuple[ClassificationResult, Any, float]] = []  # result, LoadedImage, ms
        for src, label in chunk:
            if cancel is not None:
                cancel.raise_if_cancelled()
            r = ClassificationResult(source=label, device=dev)
            results.append(r)
            t0 = time.perf_counter()
            data = None
            try:
                if isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview)):
                    data = bytes(src) if not isinstance(src, (str, os.PathLike)) else read_bytes(src)
                    im = open_image(data, label, max_pixels=self.max_pixels, resize_short_side=self.resize_size)
                    if self._nvjpeg_suits(im, data):
                        orientation = exif_orientation(im)  # a JPEG's EXIF is in its header
                        w, h = im.size
                        r.image_size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
                        jpegs.append(_Jpeg(r, data, orientation, _ms(t0), w * h))
                        continue
                li = self._load_cpu(src if data is None else data, label, draft=False)
            except ImageLoadError as e:
                r.error = e.reason
                r.timings_ms = {"decode": _ms(t0)}
                continue
            r.image_size = li.size
            others.append((r, li, _ms(t0)))

        from torchvision.transforms.functional import pil_to_tensor

        events = _EventTimer()
        tensors, slots, spans = [], [], []

        def preprocess(r, x, decode_ms, decode_span) -> None:
            if cancel is not None:
                cancel.raise_if_cancelled()
            start = events.mark()
            tensors.append(self.transforms(x.expand(3, -1, -1) if x.shape[0] == 1 else x))
            slots.append(r)
            spans.append((r, decode_ms, decode_span, (start, events.mark())))

        for group in _pixel_groups(jpegs, DECODE_PIXELS_PER_CALL):
            decoded = self._decode_jpeg_group(group, events, others)
            decoded.reverse()
            while decoded:  # pop: each full-size image is freed once its network input exists
                job, x, span = decoded.pop()
                preprocess(job.result, _orient_tensor(x, job.orientation), job.header_ms, span)
                del x
        while others:
            r, li, ms = others.pop(0)
            t1 = time.perf_counter()
            x = pil_to_tensor(li.image).to(dev)  # not non_blocking: the PIL buffer is not pinned
            del li
            preprocess(r, x, ms + _ms(t1), None)
            del x
        if tensors:
            forward = self._forward_and_fill(tensors, slots, top, dev, events)
            # The top-k reached the CPU: every event before it has completed.
            for r, decode_ms, decode_span, (p0, p1) in spans:
                if decode_span is not None:
                    d0, d1, n = decode_span
                    decode_ms += events.ms(d0, d1) / n
                r.timings_ms = {"decode": decode_ms, "preprocess": events.ms(p0, p1), "forward": forward}
                r.timings_ms["total"] = sum(r.timings_ms.values())
        return results

    def _decode_jpeg_group(self, group: list[_Jpeg], events, others) -> list[tuple[_Jpeg, Any, Any]]:
        """nvjpeg decodes `group` in one call: (job, uint8 (C, H, W) on the device, decode span) each.
        nvjpeg refuses the whole list when one image fails, and reports its own lack of memory as the
        same "Error while decoding JPEG images": the group is halved until the failure is one image,
        which is handed to PIL (it decodes, or explains, what nvjpeg cannot) unless GPU memory is
        what ran out (OutOfMemoryError). Running short of memory is said in the results' notice."""
        import torch

        start = events.mark()
        try:
            images = self._decode_jpegs_cuda([job.data for job in group])
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as e:
            torch.cuda.empty_cache()  # what the allocator caches is out of nvjpeg's reach
            need = sum(job.pixels for job in group) * 3 * 2  # the decoded images and nvjpeg's buffers
            short = _nvjpeg_out_of_memory(e, need, self.device)
            if len(group) == 1:
                job = group[0]
                if short:
                    raise torch.cuda.OutOfMemoryError(
                        f"nvjpeg ran out of GPU memory decoding {job.result.source} ({_first_line(e)})") from None
                t1 = time.perf_counter()
                try:
                    li = self._load_cpu(job.data, job.result.source, draft=False)
                except ImageLoadError as err:
                    job.result.error = err.reason
                    job.result.timings_ms = {"decode": job.header_ms + _ms(t1)}
                    return []
                others.append((job.result, li, job.header_ms + _ms(t1)))
                return []
            if short:
                notice = (f"nvjpeg ran out of GPU memory decoding {len(group)} images at once; "
                          "decoding them in smaller groups")
                if not self.notices or self.notices[-1] != notice:
                    self.notices.append(notice)
                for job in group:
                    job.result.add_notice(notice)
            half = len(group) // 2
            return (self._decode_jpeg_group(group[:half], events, others)
                    + self._decode_jpeg_group(group[half:], events, others))
        span = (start, events.mark(), len(group))
        return [(job, x, span) for job, x in zip(group, images)]

    def _forward_and_fill(self, tensors, slots, top, device, events=None) -> float:
        """One forward of the stacked inputs; fills each slot's top-k and its share of the forward
        time, which it returns (ms; timed by CUDA events when `events` is given)."""
        import torch

        module = self._module(device)
        t0 = time.perf_counter()
        e0 = events.mark() if events is not None else None
        with torch.inference_mode():
            x = torch.stack(tensors).to(device)
            if self.optimize:
                x = x.contiguous(memory_format=torch.channels_last)
            if self._graph is not None and device.startswith("cuda") and x.shape[0] == 1:
                graph, static_in, static_out = self._graph
                static_in.copy_(x)
                graph.replay()
                logits = static_out.clone()
            else:
                logits = module(x)
            probs = _class_scores(logits).float().softmax(dim=1)
            e1 = events.mark() if events is not None else None
            k = min(top, probs.shape[1])
            values, indices = probs.topk(k, dim=1)
            values, indices = values.cpu().tolist(), indices.cpu().tolist()
        share = (events.ms(e0, e1) if events is not None else _ms(t0)) / len(slots)
        for r, vs, ixs in zip(slots, values, indices):
            r.fill(vs, ixs, self.categories)
            r.timings_ms["forward"] = share
            r.timings_ms["total"] = sum(r.timings_ms.values())
        return share

    def logits(self, images: Sequence[ImageInput]):
        """Raw logits (N, classes) on the CPU for images that all load (ImageLoadError otherwise);
        for comparisons and tests."""
        import torch

        with self._lock:
            if self._on_cuda:
                with torch.cuda.device(self.device):
                    return self._logits_cuda(images)
            xs = [self._preprocess_pil(self._load_cpu(src, _label(src, i))) for i, src in enumerate(images)]
            with torch.inference_mode():
                x = torch.stack(xs)
                if self.optimize:
                    x = x.contiguous(memory_format=torch.channels_last)
                return self._module("cpu")(x).float().cpu()

    # ------------------------------------------------------------------ pieces

    def _load_cpu(self, src, label: str, draft: bool | None = None) -> LoadedImage:
        draft = self.fast_decode if draft is None else draft
        if isinstance(src, LoadedImage):
            check_resize(src.size, self.resize_size, label, max_pixels=self.max_pixels)
            return src
        if isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview)):
            return load_image(
                src,
                max_pixels=self.max_pixels,
                draft_short_side=self.resize_size if draft else None,
                resize_short_side=self.resize_size,
                name=label,
            )
        # A PIL image (pasted from the clipboard, say).
        size = getattr(src, "size", None)
        if isinstance(size, tuple) and len(size) == 2:
            check_resize(size, self.resize_size, label, max_pixels=self.max_pixels)
        try:
            rgb = to_rgb(src)
        except (AttributeError, OSError, ValueError) as e:
            raise ImageLoadError(label, f"not an image: {e}") from None
        w, h = rgb.size
        return LoadedImage(image=rgb, source=label, format="", stored_size=(w, h), mode=src.mode, box=(0, 0, w, h))

    def _preprocess_pil(self, li: LoadedImage):
        """The network input (3, crop, crop) of a loaded image: `weights.transforms()` on it."""
        return self.transforms(self._resized_pil(li))

    def _resized_pil(self, li: LoadedImage):
        """`li` resized as the transform's first step resizes it (PIL only, no torch operation: this
        runs on the decode threads). The transform then finds the image at its size and only copies
        it, so `self.transforms(result)` is `self.transforms(li.image)` bit for bit."""
        im = li.image
        if li.draft_scale > 1:
            # Finish the reduced decode with the transform's own filter, to the size it would have
            # produced from the full image, mapping the full image's extent (`box`) exactly.
            from PIL import Image

            mode = getattr(getattr(self.transforms, "interpolation", None), "value", "bilinear")
            resample = Image.Resampling.BICUBIC if mode == "bicubic" else Image.Resampling.BILINEAR
            return im.resize(resized_size(li.size, self.resize_size), resample, box=li.box)
        from torchvision.transforms import functional as F

        tf = self.transforms
        return F.resize(im, list(tf.resize_size), interpolation=tf.interpolation, antialias=tf.antialias)

    def _decode_jpegs_cuda(self, datas: list[bytes]):
        """nvjpeg decodes JPEG files to uint8 RGB (3, H, W) tensors on the device, in one call.

        The operator torchvision's `decode_jpeg(device="cuda")` runs, called directly: that wrapper
        is deprecated in torchvision 0.29 (in favour of TorchCodec) and warns on every call."""
        import torch
        import torchvision.io  # noqa: F401 - registers torch.ops.image
        from torchvision.io import ImageReadMode

        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        return torch.ops.image.decode_jpegs_cuda(tensors, ImageReadMode.RGB.value, torch.device(self.device))

    def _logits_cuda(self, images):
        import torch

        tensors = [self.device_input(src, _label(src, i)) for i, src in enumerate(images)]
        with torch.inference_mode():
            x = torch.stack(tensors)
            if self.optimize:
                x = x.contiguous(memory_format=torch.channels_last)
            return self._module(self.device)(x).float().cpu()

    def device_input(self, src, label: str = "<image>"):
        """The network input for one image as the CUDA path makes it: (3, crop, crop) on the device.

        JPEGs are decoded by nvjpeg (EXIF orientation applied on the device), other files by PIL;
        then `weights.transforms()` runs on the uint8 tensor. ImageLoadError for a bad file."""
        return self.transforms(self._decode_on_device(src, label)[0])

    def _nvjpeg_suits(self, im, data: bytes) -> bool:
        """Whether nvjpeg decodes this JPEG (`im`, PIL's image of `data` read as far as its header).

        nvjpeg upsamples subsampled chroma more simply than libjpeg (PIL), so on colour edges its
        pixels differ by up to tens of grey levels (measured on an H100, `bench_gpu_input`: a
        512×512 photo 20 levels at most, a 300×200 noise file 76). The transform's antialiased
        downscale averages that away as the image grows (`bench_gpu_input --sweep`): from
        NVJPEG_MIN_SCALE × the resize size, photos and noise differ by at most 2 levels, 25-pixel
        blocks of saturated colours by 5, the mean by 0.3 at most; and large files are where nvjpeg
        saves time (12 MP: 10 ms against PIL's 180). Greyscale and 4:4:4 JPEGs have no subsampled
        chroma: nvjpeg matches PIL at any size. The rest is decoded by PIL on the CPU, as the
        reference."""
        from PIL import JpegImagePlugin

        if im.format != "JPEG" or im.mode not in ("RGB", "L", "YCbCr") or not _ends_like_jpeg(data):
            return False
        if im.mode == "L" or JpegImagePlugin.get_sampling(im) == 0:
            return True
        return min(im.size) >= NVJPEG_MIN_SCALE * self.resize_size

    def _decode_on_device(self, src, label: str):
        """One image as the CUDA path decodes it: (uint8 (C, H, W) on the device, upright (width,
        height), the PIL image when PIL decoded it else None). nvjpeg for JPEGs, PIL otherwise and
        for a JPEG that nvjpeg refuses (PIL then explains what is wrong with it)."""
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        if isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview)):
            data = read_bytes(src) if isinstance(src, (str, os.PathLike)) else bytes(src)
            im = open_image(data, label, max_pixels=self.max_pixels, resize_short_side=self.resize_size)
            if self._nvjpeg_suits(im, data):
                try:
                    x = _orient_tensor(self._decode_jpegs_cuda([data])[0], exif_orientation(im))
                    return x, (int(x.shape[2]), int(x.shape[1])), None
                except torch.cuda.OutOfMemoryError:
                    raise
                except RuntimeError:
                    pass
            src = data
        li = self._load_cpu(src, label, draft=False)
        return pil_to_tensor(li.image).to(self.device), li.size, li.image

    def _module(self, device: str):
        """The network for `device`: a copy (the loaded model stays as it is, on the CPU)."""
        if device not in self._modules:
            import torch

            module = copy.deepcopy(self.loaded.module).eval()
            if self.optimize:
                module = fold_batch_norms(module).to(memory_format=torch.channels_last)
            self._modules[device] = module.to(device)
        return self._modules[device]

    def _fall_back_to_cpu(self, reason: str) -> None:
        import torch

        self._graph = None
        self._modules = {k: v for k, v in self._modules.items() if not k.startswith("cuda")}
        self._capture_models = {k: v for k, v in self._capture_models.items() if not k.startswith("cuda")}
        torch.cuda.empty_cache()
        self.device = "cpu"
        self.notices.append(f"{reason}; classifying on the CPU from now on")


def _label(src, i: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, LoadedImage):
        return src.source
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<bytes {i + 1}>"
    return f"<image {i + 1}>"


def _category(categories: Sequence[str], index: int) -> str:
    return categories[index] if 0 <= index < len(categories) else f"class {index}"


def _display_picture(image, display_max: int | None):
    """A uint8 (C, H, W) tensor as an RGB PIL image, first shrunk (antialiased, where it lies) so that
    its long side is at most `display_max`: only what is displayed crosses to the CPU."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    x = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    h, w = int(x.shape[1]), int(x.shape[2])
    if display_max is not None and max(h, w) > display_max:
        s = display_max / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        x = x.round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).contiguous().cpu().numpy(), "RGB")


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


@dataclass
class _Jpeg:
    """A JPEG of a GPU batch, read as far as its header."""

    result: ClassificationResult
    data: bytes
    orientation: int
    header_ms: float
    pixels: int


def _pixel_groups(jpegs: list[_Jpeg], budget: int) -> Iterator[list[_Jpeg]]:
    """`jpegs` in order, in groups of at most `budget` pixels (one image alone may exceed it)."""
    group: list[_Jpeg] = []
    pixels = 0
    for job in jpegs:
        if group and pixels + job.pixels > budget:
            yield group
            group, pixels = [], 0
        group.append(job)
        pixels += job.pixels
    if group:
        yield group


class _EventTimer:
    """CUDA events on the current stream: `mark()` records one, `ms(a, b)` reads the time between
    two once they have completed. Timing this way needs no synchronisation while work is queued."""

    def __init__(self):
        import torch

        self._event = torch.cuda.Event

    def mark(self):
        e = self._event(enable_timing=True)
        e.record()
        return e

    @staticmethod
    def ms(start, end) -> float:
        return float(start.elapsed_time(end))


def _nvjpeg_out_of_memory(error: BaseException, need_bytes: int, device: str) -> bool:
    """Whether an nvjpeg failure is GPU memory running out: torchvision reports nvjpeg's
    NVJPEG_STATUS_ALLOCATOR_FAILURE (5) as "Error while decoding JPEG images: 5", and any failure
    with less free memory than the decode needs is taken as one."""
    import re

    import torch

    text = str(error)
    if "out of memory" in text.lower() or re.search(r"JPEG images: 5\b", text):
        return True
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return False
    return free < need_bytes


def _orient_tensor(x, orientation: int):
    """Apply EXIF `orientation` to a (C, H, W) tensor, as PIL's exif_transpose does to an image."""
    if orientation == 1:
        return x
    flip_w = lambda t: t.flip(-1)  # noqa: E731
    flip_h = lambda t: t.flip(-2)  # noqa: E731
    swap = lambda t: t.transpose(-1, -2)  # noqa: E731
    ops: dict[int, Callable[[Any], Any]] = {
        2: flip_w,
        3: lambda t: t.flip(-1, -2),
        4: flip_h,
        5: swap,
        6: lambda t: flip_w(swap(t)),  # 90° clockwise
        7: lambda t: flip_w(flip_h(swap(t))),
        8: lambda t: flip_h(swap(t)),  # 90° counter-clockwise
    }
    return ops[orientation](x).contiguous()


def _ends_like_jpeg(data: bytes) -> bool:
    """A JPEG whose end-of-image marker is missing is truncated: PIL (not nvjpeg) must judge it."""
    return b"\xff\xd9" in data[-4096:]


_TINY_JPEG: bytes | None = None


def _tiny_jpeg() -> bytes:
    global _TINY_JPEG
    if _TINY_JPEG is None:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (128, 64, 32)).save(buf, "JPEG")
        _TINY_JPEG = buf.getvalue()
    return _TINY_JPEG
