"""A list of images classified in batches: decoding beside the forward, the fallback to the CPU, timings.

Both paths read their images on one thread pool (`DecodeAhead`), queued one batch ahead: the next
batch decodes while this one's forward runs. On the CPU a pool thread decodes and resizes each image
(PIL); on a GPU it reads the file and the JPEG header for the ones nvjpeg decodes, and decodes the rest
with PIL, then the calling thread hands the batch's JPEGs to nvjpeg in one batched call of bounded size
and runs the transform and the forward on the device, its stages timed with CUDA events. Running out of
GPU memory, or a GPU this torch build cannot run, finishes the batch (and every later one) on the CPU.
torch is imported when a batch runs, not at import.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
#: 36 MB for a 12-megapixel photo; the forward needs the cores too).
MAX_DECODE_WORKERS = 8
#: Most threads that read a GPU batch's files (headers for nvjpeg, PIL for the rest): the forward runs
#: on the GPU, so every core can decode.
MAX_DEVICE_READ_WORKERS = 32


def decode_worker_count(on_cuda: bool = False, requested: int | None = None) -> int:
    """Threads of a decode pool: `requested`, else one per core, at most MAX_DECODE_WORKERS when the
    forward runs on the CPU (it needs cores too) and MAX_DEVICE_READ_WORKERS when it runs on a GPU."""
    if requested is not None:
        return max(1, requested)
    most = MAX_DEVICE_READ_WORKERS if on_cuda else MAX_DECODE_WORKERS
    return max(1, min(most, os.cpu_count() or 1))


class DecodeAhead:
    """Work on the images of a list, on a thread pool, one batch ahead of the caller.

    `take(work, start, stop, ahead)` queues `work(i)` for every index in [start, ahead) not queued yet
    and returns the futures of [start, stop), in order; `queue(work, start, stop)` only queues. An index queued with other work (the device
    changed between batches) is queued again with this one. `close()` drops what has not started and
    waits for what has: a cancelled or abandoned run leaves no thread behind."""

    def __init__(self, workers: int, name: str = "decode"):
        self.workers = max(1, workers)
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._queued: dict[int, tuple[Callable[[int], Any], Future]] = {}

    def take(self, work: Callable[[int], Any], start: int, stop: int, ahead: int) -> list[Future]:
        self.queue(work, start, max(stop, ahead))
        return [self._queued.pop(i)[1] for i in range(start, stop)]

    def queue(self, work: Callable[[int], Any], start: int, stop: int) -> None:
        """Queue `work(i)` for every index in [start, stop) not queued with it yet."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
        for i in range(start, stop):
            queued = self._queued.get(i)
            if queued is None or queued[0] != work:
                if queued is not None:
                    queued[1].cancel()
                self._queued[i] = (work, self._pool.submit(work, i))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._queued.clear()


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
        ahead = DecodeAhead(self.decode_worker_count(self.networks.on_cuda))
        decoder = self.decoder
        prepare_cpu = lambda i: decoder.prepare_cpu(inputs[i], labels[i])  # noqa: E731
        read_for_device = lambda i: self.read_one_for_device(inputs[i], labels[i])  # noqa: E731
        try:
            while start < total:
                if cancel is not None:  # before more work is queued
                    cancel.raise_if_cancelled()
                n = batch_size or DEFAULT_BATCH_SIZE["cuda" if self.networks.on_cuda else "cpu"]
                stop = min(start + n, total)
                chunk = list(zip(inputs[start:stop], labels[start:stop]))
                with lock:
                    on_cuda = self.networks.on_cuda
                    # this batch and the next
                    prepared = ahead.take(read_for_device if on_cuda else prepare_cpu, start, stop, min(stop + n, total))
                    if on_cuda:
                        results = self.classify_batch(chunk, top, cancel, prepared=prepared)
                    else:
                        results = self.classify_batch_cpu(chunk, top, cancel, prepared)
                start = stop
                done += len(chunk)
                if progress:
                    progress(done, total)
                yield results
        finally:  # cancelled or abandoned: drop what has not started, wait for the rest
            ahead.close()

    def decode_worker_count(self, on_cuda: bool = False) -> int:
        """Threads of the decode pool: `decode_workers`, else `decode_worker_count`'s default."""
        return decode_worker_count(on_cuda, self.decode_workers)

    def classify_batch(self, chunk, top: int, cancel: CancelToken | None, *,
                       prepared: list[Future] | None = None) -> list[ClassificationResult]:
        """The batch on the current device; on a GPU that runs out of memory or fails, on the CPU.
        prepared: futures of `read_one_for_device` for the chunk on a GPU (None: read here)."""
        networks = self.networks
        if networks.on_cuda:
            import torch

            try:
                with torch.cuda.device(networks.device):
                    results = (self.classify_batch_cuda(chunk, top, cancel) if prepared is None
                               else self.classify_batch_cuda(chunk, top, cancel, prepared=prepared))
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

    def read_one_for_device(self, src, label: str):
        """A GPU batch's first step for one input, on a decode thread: its result with either a
        `JpegJob` (file and header read, for nvjpeg), or the PIL-decoded image as a uint8 (C, H, W)
        CPU tensor and its ms, or neither (the error is in the result). No CUDA call, and no torch
        operation that starts threads: `pil_to_tensor` only wraps a copy of the pixels."""
        from torchvision.transforms.functional import pil_to_tensor

        r = ClassificationResult(source=label, device=self.networks.device)
        t0 = time.perf_counter()
        try:
            read = self.decoder.read_for_device(src, label, r)
        except ImageLoadError as e:
            r.error = e.reason
            r.timings_ms = {"decode": ms_since(t0)}
            return r, None
        if isinstance(read, JpegJob):
            return r, read
        _, li, ms = read
        t1 = time.perf_counter()
        x = pil_to_tensor(li.image)
        return r, (x, ms + ms_since(t1))

    def _read_for_device(self, chunk, cancel, prepared: list[Future] | None):
        """Every input's result, the JPEGs for nvjpeg (headers read) and the rest decoded by PIL as
        (result, uint8 CPU tensor, ms), from the decode pool's futures (None: read here, in turn)."""
        results: list[ClassificationResult] = []
        jpegs: list[JpegJob] = []
        others: list[tuple[ClassificationResult, Any, float]] = []
        for i, (src, label) in enumerate(chunk):
            if cancel is not None:
                cancel.raise_if_cancelled()
            r, read = prepared[i].result() if prepared is not None else self.read_one_for_device(src, label)
            results.append(r)
            if isinstance(read, JpegJob):
                jpegs.append(read)
            elif read is not None:
                others.append((r, *read))
        return results, jpegs, others

    def classify_batch_cuda(self, chunk, top, cancel, *, prepared: list[Future] | None = None
                            ) -> list[ClassificationResult]:
        """The batch on the GPU: files and JPEG headers read on the CPU (on the decode pool when
        `prepared` holds its futures), nvjpeg decodes the JPEGs in batched calls of at most
        DECODE_PIXELS_PER_CALL pixels, each decoded image released once resized. Stages are timed
        with CUDA events, read once the forward's top-k has reached the CPU: no synchronisation
        between images."""
        dev = self.networks.device
        decoder = self.decoder
        results, jpegs, others = self._read_for_device(chunk, cancel, prepared)
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
            r, x, ms = others.pop(0)
            t1 = time.perf_counter()
            x = x.to(dev)  # not non_blocking: the buffer is not pinned
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
        time, which it returns (ms; timed by CUDA events when `events` is given). One image on a GPU
        with a captured graph: one replay that computes the softmax and the top-k too."""
        import torch

        networks = self.networks
        networks.module(device)  # built before the clock starts
        t0 = time.perf_counter()
        e0 = events.mark() if events is not None else None
        with torch.inference_mode():
            ranked = None
            if len(tensors) == 1 and networks.replays(tensors[0][None], device):
                ranked = networks.top_of_one(tensors[0], top)
            if ranked is not None:
                e1 = events.mark() if events is not None else None
                values, indices = [ranked[0]], [ranked[1]]
            else:
                x = torch.stack(tensors).to(device)
                if self.optimize:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits = networks.forward(x, device)
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
