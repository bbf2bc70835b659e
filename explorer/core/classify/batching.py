"""A list of images classified in batches: decoding beside the forward, the fallback to the CPU, timings.

On the CPU each batch's images are decoded and preprocessed on a thread pool, queued one batch ahead
(the next batch decodes while this one's forward runs); on a GPU, JPEG headers are read on the CPU,
nvjpeg decodes in calls of bounded size, and the stages are timed with CUDA events. Running out of GPU
memory, or a GPU this torch build cannot run, finishes the batch (and every later one) on the CPU.
torch is imported when a batch runs, not at import.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from explorer.core.cancel import CancelToken, ProgressCallback
from explorer.core.classify.decode import DECODE_PIXELS_PER_CALL, Decoder, JpegJob, orient_tensor, pixel_groups
from explorer.core.classify.device import DeviceNetworks
from explorer.core.classify.images import ImageLoadError
from explorer.core.classify.results import (
    GPU_INPUT_NOTICE,
    ClassificationResult,
    class_scores,
    ms_since,
)
from explorer.core.text import first_line

#: Images per forward pass, by device type.
DEFAULT_BATCH_SIZE = {"cuda": 64, "cpu": 8}
#: Most threads that decode and preprocess the images of a CPU batch (each holds one decoded image:
#: 36 MB for a 12-megapixel photo).
MAX_DECODE_WORKERS = 8


class EventTimer:
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


class BatchRunner:
    """Runs batches of (input, label) through a `Decoder` and the `DeviceNetworks`' network on their
    current device, filling one `ClassificationResult` per input."""

    def __init__(self, decoder: Decoder, networks: DeviceNetworks, categories: Sequence[str], *, optimize: bool):
        self.decoder = decoder
        self.networks = networks
        self.categories = categories
        self.optimize = optimize
        #: Threads that decode and preprocess a CPU batch (None: one per CPU core, at most
        #: MAX_DECODE_WORKERS).
        self.decode_workers: int | None = None

    def iter_batches(
        self,
        inputs: list,
        labels: list[str],
        *,
        top: int,
        batch_size: int | None,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
        lock: threading.RLock,
    ) -> Iterator[list[ClassificationResult]]:
        """Each batch's results, in input order, when it is done; `lock` is held while a batch runs.
        batch_size: None for the current device's DEFAULT_BATCH_SIZE (read at each batch)."""
        total = len(inputs)
        done = 0
        if progress:
            progress(0, total)
        start = 0
        pool: ThreadPoolExecutor | None = None
        queued: dict[int, Future] = {}
        try:
            while start < total:
                n = batch_size or DEFAULT_BATCH_SIZE["cuda" if self.networks.on_cuda else "cpu"]
                stop = min(start + n, total)
                chunk = list(zip(inputs[start:stop], labels[start:stop]))
                with lock:
                    if self.networks.on_cuda:
                        results = self.classify_batch(chunk, top, cancel)
                    else:
                        if pool is None:
                            pool = ThreadPoolExecutor(self.decode_worker_count(), thread_name_prefix="decode")
                        for i in range(start, min(stop + n, total)):  # this batch and the next
                            if i not in queued:
                                queued[i] = pool.submit(self.decoder.prepare_cpu, inputs[i], labels[i])
                        prepared = [queued.pop(i) for i in range(start, stop)]
                        results = self.classify_batch_cpu(chunk, top, cancel, prepared)
                start = stop
                done += len(chunk)
                if progress:
                    progress(done, total)
                yield results
        finally:
            if pool is not None:  # cancelled or abandoned: drop what has not started, wait for the rest
                pool.shutdown(wait=True, cancel_futures=True)

    def decode_worker_count(self) -> int:
        if self.decode_workers is not None:
            return max(1, self.decode_workers)
        return max(1, min(MAX_DECODE_WORKERS, os.cpu_count() or 1))

    def classify_batch(self, chunk, top: int, cancel: CancelToken | None) -> list[ClassificationResult]:
        """The batch on the current device; on a GPU that runs out of memory or fails, on the CPU."""
        networks = self.networks
        if networks.on_cuda:
            import torch

            try:
                with torch.cuda.device(networks.device):
                    results = self.classify_batch_cuda(chunk, top, cancel)
                for r in results:
                    if r.ok:
                        r.add_notice(GPU_INPUT_NOTICE)
                return results
            except torch.cuda.OutOfMemoryError:
                networks.fall_back_to_cpu(f"CUDA ran out of memory on a batch of {len(chunk)}")
            except torch.AcceleratorError as e:  # e.g. no kernel for this GPU: the CPU still works
                networks.fall_back_to_cpu(f"CUDA failed ({first_line(e)})")
            results = self.classify_batch_cpu(chunk, top, cancel)
            for r in results:
                r.add_notice(networks.notices[-1])
            return results
        return self.classify_batch_cpu(chunk, top, cancel)

    def classify_batch_cpu(self, chunk, top, cancel, prepared: list[Future] | None = None):
        """The batch on the CPU: each image loaded and preprocessed (`prepared`: futures of
        `Decoder.prepare_cpu` for the chunk, already queued on a pool; None: here, one by one), then
        one forward of those that could be read."""
        results: list[ClassificationResult] = []
        tensors, slots = [], []
        for i, (src, label) in enumerate(chunk):
            if cancel is not None:
                cancel.raise_if_cancelled()
            r, resized = prepared[i].result() if prepared is not None else self.decoder.prepare_cpu(src, label)
            results.append(r)
            x = self.decoder.finish_cpu(r, resized) if resized is not None else None
            if x is not None:
                tensors.append(x)
                slots.append(r)
        if tensors:
            if cancel is not None:
                cancel.raise_if_cancelled()
            self.forward_and_fill(tensors, slots, top, "cpu")
        return results

    def _read_for_device(self, chunk, cancel, device: str):
        """A GPU batch's first step: every input's result, the JPEGs for nvjpeg (headers read) and
        the rest decoded by PIL as (result, LoadedImage, ms)."""
        results: list[ClassificationResult] = []
        jpegs: list[JpegJob] = []
        others: list[tuple[ClassificationResult, Any, float]] = []
        for src, label in chunk:
            if cancel is not None:
                cancel.raise_if_cancelled()
            r = ClassificationResult(source=label, device=device)
            results.append(r)
            t0 = time.perf_counter()
            try:
                read = self.decoder.read_for_device(src, label, r)
            except ImageLoadError as e:
                r.error = e.reason
                r.timings_ms = {"decode": ms_since(t0)}
                continue
            (jpegs if isinstance(read, JpegJob) else others).append(read)
        return results, jpegs, others

    def classify_batch_cuda(self, chunk, top, cancel) -> list[ClassificationResult]:
        """The batch on the GPU: JPEG headers read on the CPU, nvjpeg decodes in calls of at most
        DECODE_PIXELS_PER_CALL pixels, each decoded image released once resized. Stages are timed
        with CUDA events, read once the forward's top-k has reached the CPU: no synchronisation
        between images."""
        from torchvision.transforms.functional import pil_to_tensor

        dev = self.networks.device
        decoder = self.decoder
        results, jpegs, others = self._read_for_device(chunk, cancel, dev)
        events = EventTimer()
        tensors, slots, spans = [], [], []

        def preprocess(r, x, decode_ms, decode_span) -> None:
            if cancel is not None:
                cancel.raise_if_cancelled()
            start = events.mark()
            tensors.append(decoder.transforms(x.expand(3, -1, -1) if x.shape[0] == 1 else x))
            slots.append(r)
            spans.append((r, decode_ms, decode_span, (start, events.mark())))

        for group in pixel_groups(jpegs, DECODE_PIXELS_PER_CALL):
            decoded = decoder.decode_jpeg_group(group, events, others, dev)
            decoded.reverse()
            while decoded:  # pop: each full-size image is freed once its network input exists
                job, x, span = decoded.pop()
                preprocess(job.result, orient_tensor(x, job.orientation), job.header_ms, span)
                del x
        while others:
            r, li, ms = others.pop(0)
            t1 = time.perf_counter()
            x = pil_to_tensor(li.image).to(dev)  # not non_blocking: the PIL buffer is not pinned
            del li
            preprocess(r, x, ms + ms_since(t1), None)
            del x
        if tensors:
            forward = self.forward_and_fill(tensors, slots, top, dev, events)
            # The top-k reached the CPU: every event before it has completed.
            for r, decode_ms, decode_span, (p0, p1) in spans:
                if decode_span is not None:
                    d0, d1, n = decode_span
                    decode_ms += events.ms(d0, d1) / n
                r.timings_ms = {"decode": decode_ms, "preprocess": events.ms(p0, p1), "forward": forward}
                r.timings_ms["total"] = sum(r.timings_ms.values())
        return results

    def forward_and_fill(self, tensors, slots, top, device, events=None) -> float:
        """One forward of the stacked inputs; fills each slot's top-k and its share of the forward
        time, which it returns (ms; timed by CUDA events when `events` is given)."""
        import torch

        self.networks.module(device)  # built before the clock starts
        t0 = time.perf_counter()
        e0 = events.mark() if events is not None else None
        with torch.inference_mode():
            x = torch.stack(tensors).to(device)
            if self.optimize:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = self.networks.forward(x, device)
            probs = class_scores(logits).float().softmax(dim=1)
            e1 = events.mark() if events is not None else None
            k = min(top, probs.shape[1])
            values, indices = probs.topk(k, dim=1)
            values, indices = values.cpu().tolist(), indices.cpu().tolist()
        share = (events.ms(e0, e1) if events is not None else ms_since(t0)) / len(slots)
        for r, vs, ixs in zip(slots, values, indices):
            r.fill(vs, ixs, self.categories)
            r.timings_ms["forward"] = share
            r.timings_ms["total"] = sum(r.timings_ms.values())
        return share
