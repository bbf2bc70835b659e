"""One image classified by a forward that also keeps every branch's output, for the window's views.

The image is decoded once (PIL on the CPU, nvjpeg on CUDA) and its tensors stay on the device; the
top-k and the capture come from the same logits. torch is imported when it runs, not at import.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from explorer.core.cancel import CancelToken
from explorer.core.classify.decode import Decoder, display_picture
from explorer.core.classify.device import DeviceNetworks
from explorer.core.classify.images import ImageLoadError
from explorer.core.classify.results import (
    FAST_DECODE_NOTICE,
    GPU_INPUT_NOTICE,
    CapturedClassification,
    ClassificationResult,
    class_scores,
    ms_since,
)


def classify_with_capture(
    decoder: Decoder,
    networks: DeviceNetworks,
    source,
    label: str,
    *,
    top: int,
    display_max: int | None,
    cancel: CancelToken | None,
    categories: Sequence[str],
) -> CapturedClassification:
    """`source` decoded on the networks' current device and classified by one forward of its
    `CaptureModel`; see `Classifier.classify_captured`, which holds the lock and falls back to the CPU."""
    import torch

    dev = networks.device
    cm = networks.capture_model(dev)  # before the image: a capture that cannot be built fails early
    r = ClassificationResult(source=label, device=dev)
    raw = None
    t0 = time.perf_counter()
    try:
        if networks.on_cuda:
            raw, size, picture = decoder.decode_on_device(source, label, dev)
            torch.cuda.synchronize(dev)
        else:
            li = decoder.load_cpu(source, label)
            size, picture = li.size, li.image
    except ImageLoadError as e:
        r.error = e.reason
        r.timings_ms = {"decode": ms_since(t0)}
        return CapturedClassification(result=r)
    t1 = time.perf_counter()
    if raw is not None:
        x = decoder.transforms(raw.expand(3, -1, -1) if raw.shape[0] == 1 else raw)
        torch.cuda.synchronize(dev)
    else:
        x = decoder.preprocess_pil(li)
    r.image_size = size
    r.timings_ms = {"decode": (t1 - t0) * 1e3, "preprocess": ms_since(t1)}
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
        if networks.optimize:
            xb = xb.contiguous(memory_format=torch.channels_last)
        capture = cm.capture(xb)
        probs = class_scores(capture.logits).float().softmax(dim=1)
        values, indices = probs.topk(min(top, probs.shape[1]), dim=1)
        r.fill(values[0].tolist(), indices[0].tolist(), categories)
    r.timings_ms["forward"] = ms_since(t2)
    r.timings_ms["total"] = sum(r.timings_ms.values())
    with torch.no_grad():
        rgb = decoder.input_rgb(xb[0])
        if raw is not None and picture is None:
            picture = display_picture(raw, display_max)
    return CapturedClassification(result=r, capture=capture, x=xb, rgb=rgb, picture=picture)
