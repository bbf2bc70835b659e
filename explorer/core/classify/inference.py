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
  `decode_jpegs_cuda` operator, a batch's JPEGs in one call), the rest by PIL; files and headers are
  read, and PIL decodes, on the same thread pool as the CPU path's (one thread per core), a batch
  ahead of the forward; the image is resized, cropped and normalised on the device by the same
  transform object, and batch-1 forwards replay a CUDA graph captured by `warm_up()` that computes
  the softmax and the top-5 too (one replay, one copy of the answer to the CPU). The network input is within a grey level of torchvision's PIL reference on average
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

`Classifier` composes the classify room's parts: `decode.py` (images into network inputs),
`device.py` (the device and the network on it), `batching.py` (lists in batches), `captured.py`
(one image through the capture network) and `results.py` (what each image gives); their public
names are importable from here too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from explorer.core.cancel import CancelToken, ProgressCallback
from explorer.core.classify.batching import (
    DEFAULT_BATCH_SIZE,
    MAX_DECODE_WORKERS,
    MAX_DEVICE_READ_WORKERS,
    BatchRunner,
    DecodeAhead,
    EventTimer,
)
from explorer.core.classify.captured import classify_with_capture
from explorer.core.classify.decode import (
    DECODE_PIXELS_PER_CALL,
    NVJPEG_MIN_SCALE,
    CpuPreprocess,
    Decoder,
    ImageInput,
    JpegJob,
    display_picture,
    orient_tensor,
    pixel_groups,
)
from explorer.core.classify.device import (
    DeviceNetworks,
    DeviceUnavailableError,
    cuda_unsupported_reason,
    fold_batch_norms,
    resolve_device,
    use_exact_float32_on_cuda,
)
from explorer.core.classify.images import DEFAULT_MAX_PIXELS, ImageLoadError
from explorer.core.classify.results import (
    FAST_DECODE_NOTICE,
    GPU_INPUT_NOTICE,
    CapturedClassification,
    ClassificationResult,
    NotAClassifierError,
    Prediction,
    input_label,
)
from explorer.core.text import first_line

__all__ = [
    "DECODE_PIXELS_PER_CALL", "DEFAULT_BATCH_SIZE", "FAST_DECODE_NOTICE", "GPU_INPUT_NOTICE",
    "MAX_DECODE_WORKERS", "MAX_DEVICE_READ_WORKERS", "NVJPEG_MIN_SCALE", "BatchRunner", "CapturedClassification",
    "ClassificationResult", "Classifier", "CpuPreprocess", "DecodeAhead", "Decoder", "DeviceNetworks",
    "DeviceUnavailableError", "EventTimer", "ImageInput", "ImageLoadError", "JpegJob", "NotAClassifierError",
    "Prediction", "cuda_unsupported_reason", "fold_batch_norms", "pixel_groups", "resolve_device",
    "use_exact_float32_on_cuda",
]

# The names these had while they lived here.
_orient_tensor = orient_tensor
_display_picture = display_picture


class Classifier:
    """Classifies images with one loaded model on one device.

    `classify` runs a whole list and returns one result per input, in order; `iter_classify` yields
    each batch's results as soon as they are ready (for a table that fills while a folder runs).
    One call at a time: concurrent calls wait for each other. The work is done by its parts:
    `decoder` (a `Decoder`), `networks` (the `DeviceNetworks`, which own `device`) and `batches`
    (a `BatchRunner`).
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
        switches=None,
    ):
        """loaded: a `LoadedModel`. fast_decode: decode big JPEGs at a reduced scale on the CPU path
        (approximate, labelled in each result; the attribute can be changed later).
        optimize: fold batch norms and use channels-last (False: the model exactly as loaded).
        graph: the model's `BlockGraph`, needed by `classify_captured` (or `set_graph` later).
        switches: branches switched off (`DeviceNetworks`), in every forward of this classifier."""
        self.loaded = loaded
        self.transforms = loaded.transforms()
        self.categories = list(loaded.categories)
        self.optimize = optimize
        self.batch_size = batch_size
        #: Things the user should know about this classifier (e.g. a fallback to the CPU).
        self.notices: list[str] = []
        resolved = resolve_device(device)
        if device == "auto" and resolved == "cpu":
            import torch

            if torch.cuda.is_available():
                self.notices.append(f"{cuda_unsupported_reason()}; classifying on the CPU")
        self.decoder = Decoder(self.transforms, max_pixels=max_pixels, fast_decode=fast_decode, notices=self.notices)
        self.networks = DeviceNetworks(loaded.module, resolved, optimize=optimize, notices=self.notices, graph=graph,
                                       switches=switches)
        self.batches = BatchRunner(self.decoder, self.networks, self.categories, optimize=optimize)
        self.resize_size = self.decoder.resize_size
        self.crop_size = self.decoder.crop_size
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ settings, held by the parts

    @property
    def device(self) -> str:
        """Where this classifier computes ('cpu', 'cuda', 'cuda:N'); 'cpu' after a fallback."""
        return self.networks.device

    @device.setter
    def device(self, value: str) -> None:
        self.networks.device = value

    @property
    def fast_decode(self) -> bool:
        """Decode big JPEGs at a reduced DCT scale on the CPU (read at each image)."""
        return self.decoder.fast_decode

    @fast_decode.setter
    def fast_decode(self, value: bool) -> None:
        self.decoder.fast_decode = value

    @property
    def max_pixels(self) -> int | None:
        """The largest image, in pixels, that is decoded (None: no limit)."""
        return self.decoder.max_pixels

    @max_pixels.setter
    def max_pixels(self, value: int | None) -> None:
        self.decoder.max_pixels = value

    @property
    def decode_workers(self) -> int | None:
        """Threads that decode a batch (None: one per CPU core, at most MAX_DECODE_WORKERS on the CPU and
        MAX_DEVICE_READ_WORKERS on a GPU)."""
        return self.batches.decode_workers

    @decode_workers.setter
    def decode_workers(self, value: int | None) -> None:
        self.batches.decode_workers = value

    @property
    def graph(self):
        """The block graph that `classify_captured` probes (None: captures are unavailable)."""
        return self.networks.graph

    @graph.setter
    def graph(self, value) -> None:
        self.networks.graph = value

    @property
    def capture_error(self) -> str | None:
        """Why no CaptureModel could be built over the device module (None: none tried or it worked)."""
        return self.networks.capture_error

    @property
    def graph_ready(self) -> bool:
        """Whether batch-1 forwards replay a captured CUDA graph."""
        return self.networks.cuda_graph is not None

    @property
    def module(self):
        """The network as this classifier runs it: a copy on its device (BN-folded, channels-last
        unless `optimize` is off). Plain classification and `classify_captured` both run it."""
        with self._lock:
            return self.networks.module(self.device)

    @property
    def can_capture(self) -> bool:
        """Whether `classify_captured` can run: a block graph is set and no capture build has failed."""
        return self.graph is not None and self.capture_error is None

    def set_graph(self, graph) -> None:
        """Probe `graph` (the loaded model's `BlockGraph`) in `classify_captured` from now on."""
        with self._lock:
            self.networks.set_graph(graph)

    def capture_model(self, device: str | None = None):
        """The `CaptureModel` over this classifier's own device module, traced once per device: it
        shares the module's (folded) parameters, so a capture costs one forward of that network.
        RuntimeError when there is no graph or the network does not match it."""
        with self._lock:
            return self.networks.capture_model(device or self.device)

    # ------------------------------------------------------------------ warm-up

    def warm_up(self) -> bool:
        """Prepare the device path: build the device copy of the model, initialise nvjpeg and capture
        a CUDA graph for batch-1 forwards. Slow (seconds): run it in a worker. No-op on the CPU
        apart from building the optimised model; returns whether a CUDA graph is ready.

        Running out of GPU memory, or any CUDA failure (a GPU the wheel has no kernels for, say),
        moves the classifier to the CPU with a notice; a graph that cannot be captured leaves eager
        forwards on the GPU."""
        with self._lock:
            networks = self.networks
            if networks.on_cuda:
                import torch

                try:
                    with torch.cuda.device(self.device):
                        networks.module(self.device)
                        networks.build_capture_model()
                        self.decoder.warm_up_nvjpeg(self.device)
                        return networks.capture_cuda_graph(self.crop_size)
                except torch.cuda.OutOfMemoryError:
                    networks.fall_back_to_cpu("CUDA ran out of memory while warming up")
                except RuntimeError as e:  # torch.AcceleratorError and kernels that fail with their own
                    networks.fall_back_to_cpu(f"CUDA failed while warming up ({first_line(e)})")
            networks.module(self.device)
            networks.build_capture_model()
            return False

    # ------------------------------------------------------------------ classification

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
        labels = list(names) if names is not None else [input_label(x, i) for i, x in enumerate(inputs)]
        if len(labels) != len(inputs):
            raise ValueError("names must have one entry per input")
        yield from self.batches.iter_batches(
            inputs, labels, top=top, batch_size=batch_size or self.batch_size,
            progress=progress, cancel=cancel, lock=self._lock,
        )

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
        label = name if name is not None else input_label(source, 0)
        with self._lock:
            if self.networks.on_cuda:
                import torch

                try:
                    with torch.cuda.device(self.device):
                        return self._classify_captured(source, label, top, display_max, cancel)
                except torch.cuda.OutOfMemoryError:
                    self.networks.fall_back_to_cpu("CUDA ran out of memory on one image")
                except torch.AcceleratorError as e:
                    self.networks.fall_back_to_cpu(f"CUDA failed ({first_line(e)})")
                out = self._classify_captured(source, label, top, display_max, cancel)
                out.result.add_notice(self.notices[-1])
                return out
            return self._classify_captured(source, label, top, display_max, cancel)

    def _classify_captured(self, source, label: str, top: int, display_max, cancel) -> CapturedClassification:
        return classify_with_capture(
            self.decoder, self.networks, source, label,
            top=top, display_max=display_max, cancel=cancel, categories=self.categories,
        )

    # ------------------------------------------------------------------ network inputs and logits

    def input_rgb(self, x):
        """A normalised (3, H, W) network input as the (H, W, 3) uint8 picture it was made from."""
        return self.decoder.input_rgb(x)

    @property
    def preprocess(self) -> CpuPreprocess:
        """The network input for one image on the CPU path, `preprocess(image)`: a (3, crop, crop)
        float tensor; its halves `prepare` and `finish` let a decode pool run the PIL half."""
        return CpuPreprocess(self.decoder)

    def device_input(self, src, label: str = "<image>"):
        """The network input for one image as the CUDA path makes it: (3, crop, crop) on the device.

        JPEGs are decoded by nvjpeg (EXIF orientation applied on the device), other files by PIL;
        then `weights.transforms()` runs on the uint8 tensor. ImageLoadError for a bad file."""
        return self.decoder.device_input(src, label, self.device)

    def logits(self, images: Sequence[ImageInput]):
        """Raw logits (N, classes) on the CPU for images that all load (ImageLoadError otherwise);
        for comparisons and tests."""
        import torch

        with self._lock:
            if self.networks.on_cuda:
                with torch.cuda.device(self.device):
                    xs = [self.device_input(src, input_label(src, i)) for i, src in enumerate(images)]
                    return self._forward_logits(xs, self.device)
            decoder = self.decoder
            xs = [decoder.preprocess_pil(decoder.load_cpu(src, input_label(src, i))) for i, src in enumerate(images)]
            return self._forward_logits(xs, "cpu")

    def _forward_logits(self, xs: list, device: str):
        import torch

        with torch.inference_mode():
            x = torch.stack(xs)
            if self.optimize:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.networks.module(device)(x).float().cpu()
