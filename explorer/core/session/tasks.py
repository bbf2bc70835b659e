"""Engine tasks for the window's workers: generators that take a CancelToken and yield typed events.

A task checks `cancel` between steps; the worker that runs it (explorer.qt.workers.Job) hands each
event to the UI thread, where it is dispatched by type. Nothing here knows about Qt: a picture for
display travels as an RGB uint8 array. numpy, PIL and torch are imported by the tasks, not here: the
window imports this module before it first paints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.core.cancel import CancelToken
from explorer.core.session.events import BatchClassified, ClassifierReady, FilesListed, ImageClassified, ImageShown

#: Classes shown per image.
TOP = 5
#: Longest side of the picture sent to the UI thread (the view scales it further).
DISPLAY_MAX = 768


@dataclass
class ShownImage:
    """What the single view displays, for views that work on the same image (activations, attribution).

    image: the upright RGB PIL image as decoded (on the CPU a big JPEG at a reduced DCT scale, never
    smaller than the network's resize; a GPU decode shrunk to DISPLAY_MAX). result: its
    ClassificationResult. capture: the `Capture` of the forward that gave `result` (tensors on the
    classifier's device), None without a block graph. x: that forward's input (1, 3, crop, crop), on
    the same device. rgb: x de-normalised, (crop, crop, 3) uint8. model: the model's name. key: the
    ResultKey of the request it answers (explorer.core.session.state), stamped on the UI thread.
    """

    source: str
    image: Any
    result: Any
    capture: Any = None
    x: Any = None
    rgb: Any = None
    model: str | None = None
    key: Any = None


def display_name(source: str) -> str:
    """A file's name for a title or a table cell (pasted images keep their placeholder name)."""
    return Path(source).name if source and not source.startswith("<") else (source or "")


# -- tasks ----------------------------------------------------------------------------------


def prepare_classifier(loaded, device: str, batch_size: int | None, graph, branches_now=None, *,
                       cancel: CancelToken):
    """Build the classifier (a device copy of the network, probed through `graph` when given) and
    warm it up (its capture model; CUDA graphs on a GPU). `branches_now()`: the branches switched off and the
    mode, read at every forward (explorer.core.attribution.knockout.BranchSwitches)."""
    from explorer.core.classify.inference import Classifier

    switches = None
    if branches_now is not None and graph is not None:
        from explorer.core.attribution.knockout import BranchSwitches

        switches = BranchSwitches(branches_now)
    classifier = Classifier(loaded, device=device, batch_size=batch_size, graph=graph, switches=switches)
    cancel.raise_if_cancelled()
    classifier.warm_up()
    yield ClassifierReady(classifier)


def classify_single(classifier, source, name: str, *, cancel: CancelToken):
    """Classify one input and hand it on for display (the top-k comes first). With a block graph,
    one forward gives the top-k and every branch's output, from one decode."""
    if classifier.can_capture:
        out = classifier.classify_captured(source, name=name, top=TOP, display_max=DISPLAY_MAX, cancel=cancel)
        yield ImageClassified(out.result)
        if out.result.ok:
            cancel.raise_if_cancelled()
            yield _captured_shown(classifier, out, name)
        return
    [result] = classifier.classify([source], names=[name], top=TOP, cancel=cancel)
    yield ImageClassified(result)
    if result.ok:
        cancel.raise_if_cancelled()
        yield _decoded_shown(classifier, source, name, result)


def classify_batch(classifier, paths: list, *, cancel: CancelToken):
    """Expand folders, announce the file list (a file given twice, once), then classify it batch by batch."""
    from explorer.core.classify.images import expand_inputs, unique_files

    files: list[Path] = []
    empty: list[str] = []
    for p in paths:
        found = expand_inputs([p])
        if Path(p).is_dir() and not found:
            empty.append(str(p))
        files.extend(found)
    files = unique_files(files)
    yield FilesListed(tuple(str(f) for f in files), tuple(empty))
    for results in classifier.iter_classify(files, top=TOP, cancel=cancel):
        yield BatchClassified(tuple(results))


def preview_file(classifier, source: str, result, *, cancel: CancelToken):
    """Show a file of the batch table (a row was selected). With a block graph the batch kept no
    activations: one captured forward then gives the view its top-k and activations together."""
    if classifier.can_capture:
        out = classifier.classify_captured(source, name=source, top=TOP, display_max=DISPLAY_MAX, cancel=cancel)
        yield _captured_shown(classifier, out, display_name(source)) if out.result.ok else ImageShown(None, None)
        return
    yield _decoded_shown(classifier, source, display_name(source), result)


def _thumbnail(picture):
    """An (h, w, 3) uint8 array of `picture`, at most DISPLAY_MAX on a side."""
    import numpy as np

    thumb = picture.copy()
    thumb.thumbnail((DISPLAY_MAX, DISPLAY_MAX))
    return np.ascontiguousarray(np.asarray(thumb.convert("RGB"), dtype=np.uint8))


def _captured_shown(classifier, out, name: str) -> ImageShown:
    """The ImageShown of a `CapturedClassification` (no second decode: its picture)."""
    shown = ShownImage(source=name, image=out.picture, result=out.result, capture=out.capture, x=out.x,
                       rgb=out.rgb, model=classifier.loaded.name)
    return ImageShown(shown, _thumbnail(out.picture))


def _decoded_shown(classifier, source, name: str, result) -> ImageShown:
    """The ImageShown of an image whose top-k came from `classify` (a classifier without a block graph);
    no picture when the file cannot be decoded any more."""
    from explorer.core.classify.images import ImageLoadError, LoadedImage, load_image, to_rgb

    try:
        if isinstance(source, (str, os.PathLike)):
            # Decoded as the classifier decodes: the input shown is the one that was classified.
            draft = classifier.resize_size if classifier.fast_decode else None
            li = load_image(source, max_pixels=classifier.max_pixels, draft_short_side=draft,
                            resize_short_side=classifier.resize_size, name=name)
        else:
            rgb = to_rgb(source)
            li = LoadedImage(image=rgb, source=name, format="", stored_size=rgb.size, mode=source.mode,
                             box=(0, 0, *rgb.size))
    except ImageLoadError:
        return ImageShown(None, None)
    x = classifier.preprocess(li)[None]
    shown = ShownImage(source=name, image=li.image, result=result, x=x, rgb=classifier.input_rgb(x[0]),
                       model=classifier.loaded.name)
    return ImageShown(shown, _thumbnail(li.image))
