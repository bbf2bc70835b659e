"""The command line over the engine: `inception-explorer models | trace | …`.

No Qt is imported on this path, and torch only once the arguments are known to be valid, so a
mistyped command answers at once with one line on stderr and a non-zero exit. The one exception is
`handout`, which draws its PDF with Qt (offscreen): it loads explorer.qt.lecture.handout_pdf by name inside the
command, after the engine has built the handout's content.
"""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2
EXIT_FAILED = 1
#: 128 + SIGINT: what a shell reports for a command that Ctrl-C ended.
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr (no usage dump)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class CommandError(Exception):
    """A user error found after parsing: printed as one line, exit status `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def _model_ref(text: str) -> str:
    """The model reference the window would open for `text` (a bare name becomes torchvision:/timm:);
    an unknown name is a usage error that suggests close names."""
    from explorer.core.model.anycnn import OpenModelError, resolve_reference

    try:
        return resolve_reference(text)
    except OpenModelError as e:
        raise CommandError(str(e)) from None


def _open_model(ref: str):
    """(ModelSpec, BlockGraph) of a reference; a name or file that cannot be opened is one line, exit 2."""
    from explorer.core.model.anycnn import OpenModelError
    from explorer.core.model.graphs import opened_model, zoo_block_graph
    from explorer.core.graph.program import LayerFailed
    from explorer.core.model.zoo import get_spec, model_names

    if ref in model_names():
        return get_spec(ref), zoo_block_graph(ref)
    try:
        return opened_model(ref)
    except OpenModelError as e:
        raise CommandError(str(e)) from None
    except LayerFailed as e:
        raise CommandError(f"{ref}: {e.reason}", EXIT_FAILED) from None


def _weights_column(spec) -> str:
    if spec.weights is not None:
        return f"torchvision {spec.weights[1]}.{spec.weights[2]}"
    if spec.hub_weights is not None:
        return f"Hugging Face Hub {spec.hub_weights.repo_id}"
    if spec.shipped_weights is not None:
        from explorer.core.model.weights import shipped_accuracy

        measured = shipped_accuracy(spec.shipped_weights)
        return f"shipped with the explorer ({measured})" if measured else "shipped with the explorer"
    return "none published"


def cmd_models(args) -> int:
    """The zoo with its weights; with --all, every name that can be opened (torchvision, timm)."""
    from explorer.core.model.zoo import all_specs

    specs = all_specs()
    wn = max(len(s.name) for s in specs)
    wt = max(len(s.title) for s in specs)
    for spec in specs:
        h, w = spec.native_size
        print(f"{spec.name:{wn}s}  {spec.title:{wt}s}  input {h}×{w}  weights: {_weights_column(spec)}")
    if args.all:
        from explorer.core.model.anycnn import timm_model_names, torchvision_model_names

        for name in torchvision_model_names() + timm_model_names():
            print(name)
    return 0


def cmd_gui(args) -> int:
    """The window, as `inception-explorer gui`: the launcher, loaded by name so that no Qt comes with this module."""
    import importlib

    return importlib.import_module("explorer.launcher").main(["gui", *args.options])


def cmd_trace(args) -> int:
    from explorer.core.shapes.trace import check_batch, parse_size

    ref = _model_ref(args.model)
    try:
        size = parse_size(args.size) if args.size is not None else None
        check_batch(args.batch)
    except ValueError as e:
        raise CommandError(str(e)) from None

    from explorer.core.shapes.export import TRACE_FORMATS
    from explorer.core.shapes.trace import InputTooSmallError, trace_shapes

    _, graph = _open_model(ref)
    try:
        trace = trace_shapes(graph, size or graph.native_size, batch=args.batch)
    except InputTooSmallError as e:
        raise CommandError(str(e), EXIT_FAILED) from None
    sys.stdout.write(TRACE_FORMATS[args.format](graph, trace))
    if args.format == "json":
        sys.stdout.write("\n")
    return 0


def cmd_classify(args) -> int:
    """Classify image files and folders; one stderr line per file that cannot be classified."""
    import time

    ref, files = _classify_arguments(args)
    clf = _classifier(args, ref)
    write = _classify_writer(args.format, ref, clf)
    start = time.perf_counter()
    ok = failed = 0
    # Each result is written and flushed as soon as it is known: a batch killed half-way keeps every
    # record it finished (JSON Lines: a document a line; JSON: the array is closed on Ctrl-C too).
    try:
        for batch in clf.iter_classify(files, top=args.top):
            for r in batch:
                if not r.ok:
                    failed += 1
                    print(f"inception-explorer: cannot classify {r.source}: {r.error}", file=sys.stderr)
                    continue
                ok += 1
                if r.notice:
                    print(f"inception-explorer: note: {r.notice}", file=sys.stderr)
                write(r)
    finally:
        write.close()
    elapsed = time.perf_counter() - start
    if args.format == "table" and ok:
        print(f"{ok} image(s) in {elapsed:.2f} s ({ok / elapsed:.1f} images/s) on {clf.device}, {failed} failed")
    if ok == 0:
        print(f"inception-explorer: error: none of the {failed} input(s) could be classified", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _classify_arguments(args) -> tuple[str, list]:
    """(model reference, image files) of `classify`, checked before the model loads: a bad one is one line."""
    ref = _model_ref(args.model)
    if args.top < 1:
        raise CommandError(f"--top {args.top} must be at least 1")
    from explorer.core.shapes.trace import MAX_BATCH

    if args.batch is not None and not 1 <= args.batch <= MAX_BATCH:
        raise CommandError(f"--batch {args.batch} must be from 1 to {MAX_BATCH}")
    from explorer.core.classify.images import MAX_PIXELS_LIMIT, expand_inputs

    # (NaN fails both comparisons: "not 0 < x <= limit" refuses it, and inf.)
    if args.max_pixels is not None and not 0 < args.max_pixels <= MAX_PIXELS_LIMIT / 1e6:
        raise CommandError(
            f"--max-megapixels {args.max_pixels:g} must be above 0 and at most {MAX_PIXELS_LIMIT / 1e6:g}"
        )

    files = expand_inputs(args.inputs)
    if not files:
        raise CommandError("no image files found in " + ", ".join(args.inputs), EXIT_FAILED)
    return ref, files


def _classifier(args, ref: str):
    """The warmed-up Classifier `classify` runs, its weights' warning or note and its device's notices on
    stderr; a device this machine lacks, or weights that cannot be loaded, is one line, exit 1."""
    from explorer.core.classify.images import DEFAULT_MAX_PIXELS
    from explorer.core.classify.inference import Classifier, DeviceUnavailableError, resolve_device

    try:
        resolve_device(args.device)
    except DeviceUnavailableError as e:
        raise CommandError(f"--device {args.device}: {e}", EXIT_FAILED) from None
    loaded, _graph = _load_model(ref, args.weights, need_classes=True)
    if loaded.weights.is_random:
        print(f"inception-explorer: warning: {loaded.weights.describe()}", file=sys.stderr)
    elif loaded.weights.note:
        print(f"inception-explorer: note: weights {loaded.weights.note}", file=sys.stderr)
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else int(args.max_pixels * 1e6)
    # args.device, not its resolution: given "auto", the classifier notes why a GPU was passed over.
    clf = Classifier(loaded, args.device, max_pixels=max_pixels, batch_size=args.batch, fast_decode=args.fast_decode)
    clf.warm_up()  # device copy of the model (and CUDA graph) before the clock starts
    for notice in clf.notices:
        print(f"inception-explorer: note: {notice}", file=sys.stderr)
    return clf


class _TableWriter:
    """write(result): the image, its size and timings, then its top classes, one a line; flushed."""

    def __init__(self, out):
        self.out = out

    def __call__(self, r) -> None:
        from explorer.core.text import fmt_fraction, fmt_ms

        timings = fmt_ms(r.timings_ms, ("decode", "preprocess", "forward"))
        print(f"{r.source}  ({r.image_size[0]}×{r.image_size[1]}; {timings})")
        for rank, p in enumerate(r.top, 1):
            print(f"  {rank}. {fmt_fraction(p.prob):>7}  {p.label} ({p.index})")
        self.out.flush()

    def close(self) -> None:
        pass


class _RecordsWriter:
    """write(result): its record (explorer.core.classify.results: one schema, the window's Export's too), with
    the run's provenance, as JSON Lines, a JSON array or CSV rows; close() ends the array."""

    def __init__(self, fmt: str, out, provenance):
        from explorer.core.classify.results import CSV_COLUMNS, csv_rows
        from explorer.core.records import record_writer

        self.provenance = provenance
        self.records = record_writer(fmt, out, CSV_COLUMNS, csv_rows)

    def __call__(self, r) -> None:
        self.records.write(r.to_dict(self.provenance))

    def close(self) -> None:
        self.records.close()


def _classify_writer(fmt: str, ref: str, clf):
    """The writer of each result of `classify --format fmt` (made once per run: the CSV header, the '[')."""
    if fmt == "table":
        return _TableWriter(sys.stdout)
    from explorer.core.classify.provenance import provenance_of

    provenance = provenance_of(ref, clf.loaded, clf.transforms)
    _ = provenance.weights_sha256  # the weight file is read for its hash now, before the clock starts
    return _RecordsWriter(fmt, sys.stdout, provenance)


def _load_model(ref: str, weights: str | None, *, need_classes: bool = False):
    """(LoadedModel, its BlockGraph or None for a zoo model) of a resolved model reference; a weights file
    that cannot be loaded is one error line, and so is, with `need_classes` (classify, attribute), a model
    whose output is not a vector of class scores."""
    from explorer.core.model.loading import load_model
    from explorer.core.model.weights import WeightsError
    from explorer.core.model.zoo import get_spec, model_names

    if ref in model_names():
        spec, graph, outputs = get_spec(ref), None, None
    else:
        spec, graph = _open_model(ref)
        shape = _output_shape(graph)
        if need_classes and shape is not None and len(shape) != 1:
            raise CommandError(f"{ref}: its output is a {'×'.join(map(str, shape))} map, not class scores (a "
                               "classifier ends in a vector, e.g. pooling and a linear layer)", EXIT_FAILED)
        outputs = shape[0] if shape is not None and len(shape) == 1 else None
    try:
        return load_model(spec, weights=weights or "auto", outputs=outputs), graph
    except WeightsError as e:
        raise CommandError(str(e), EXIT_FAILED) from None


def _output_shape(graph) -> tuple[int, ...] | None:
    """The model's output shape at its native size, without the batch (None: not known), as the window
    works it out: (1000,) gives ImageNet's names, another vector class indices."""
    from explorer.core.shapes.trace import trace_shapes

    last = [n for n in graph.nodes() if not n.training_only][-1]
    try:
        shape = trace_shapes(graph, graph.native_size).nodes[last.name].output_shape
    except Exception:  # a model that cannot be traced still classifies; its classes are then unnamed
        return None
    return tuple(shape) if shape is not None else None


MODEL_HELP = ("a zoo name (see `models`), torchvision:NAME, timm:NAME, a bare torchvision or timm name, a .py file"
              " with build(), or a TorchScript / torch.export file")


#: Metrics `attribute --metrics` computes next to each map.
ATTRIBUTE_METRICS = ("deletion", "insertion", "sanity", "road", "srg", "smooth_mprt", "efficient_mprt")
ATTRIBUTE_CSV_COLUMNS = ("path", "method", "target", "label", "layer", "deletion_auc", "deletion_random_auc",
                         "insertion_auc", "insertion_random_auc", "deletion_better_than_random",
                         "insertion_better_than_random", "deletion_substrate", "pointing", "inside_share", "sanity_last", "sanity_flagged",
                         "road", "road_clears", "srg", "srg_clears", "smooth_mprt", "smooth_mprt_clears",
                         "efficient_mprt", "efficient_mprt_clears", "delta", "delta_relative", "notice", "attribution_ms", "png", "npy", "model",
                         "weights", "weights_sha256", "device", "input_size", "resize", "crop", "interpolation", "mean",
                         "std")


def _attribute_choices(text: str, known: tuple[str, ...], what: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise CommandError(f"unknown {what} {', '.join(unknown) or repr(text)}; one of {', '.join(known)}")
    return list(dict.fromkeys(names))


def _branch_index(branch: str, count: int) -> int | None:
    """The 0-based index of a 1-based BRANCH typed by a person, None unless it is 1 to `count` in ASCII
    digits ('²'.isdigit() is True, int('²') fails)."""
    if not (branch.isascii() and branch.isdigit()) or len(branch) > 6:
        return None
    return int(branch) - 1 if 1 <= int(branch) <= count else None


def _last_spatial_node(graph) -> str | None:
    """The last node whose output is still a map wider than 1×1 at the native size (None: none is)."""
    from explorer.core.shapes.trace import trace_shapes

    try:
        trace = trace_shapes(graph, graph.native_size)
    except Exception:  # untraceable: no shapes to choose by
        return None
    spatial = [n.name for n in graph.nodes() if not n.training_only and n.kind != "input"
               and (t := trace.nodes.get(n.name)) is not None and t.output_shape is not None
               and len(t.output_shape) == 3 and t.output_shape[1] * t.output_shape[2] > 1]
    return spatial[-1] if spatial else None


def _attribute_layer(text: str | None, cm, methods: list[str], graph=None) -> tuple[str | None, int | None]:
    """--layer BLOCK[/BRANCH] (BRANCH 1-based, as Details shows it) checked against the model. CAM methods
    without one look at the last block, or in a network without blocks (AlexNet, a plain conv stack) at
    the last node that still has a spatial map, for the same reason."""
    from explorer.core.attribution.methods import CAM_METHODS

    blocks = list(cm.block_branches)
    if text is None:
        if not any(m in CAM_METHODS for m in methods):
            return None, None
        if blocks:
            print(f"inception-explorer: note: CAM methods look at {blocks[-1]}, the last block (the usual choice: "
                  "its features are the most class-specific and it still has a spatial map); --layer picks "
                  "another", file=sys.stderr)
            return blocks[-1], None
        node = _last_spatial_node(graph) if graph is not None else None
        if node is None or node not in cm.node_names:
            raise CommandError("CAM methods need a layer with a spatial map, and this model has no blocks and no "
                               "such node: give --layer NODE, or use saliency, integrated_gradients or occlusion",
                               EXIT_FAILED)
        print(f"inception-explorer: note: CAM methods look at {node}, the last node with a spatial map (this model "
              "has no blocks; its features are the most class-specific there); --layer picks another",
              file=sys.stderr)
        return node, None
    block, _, branch = text.partition("/")
    if block not in cm.node_names:
        known = f"blocks: {', '.join(blocks)}" if blocks else f"nodes: {', '.join(cm.node_names)}"
        raise CommandError(f"--layer {text}: no block or node {block!r}; {known}")
    if not branch:
        return block, None
    count = cm.block_branches.get(block, 0)
    index = _branch_index(branch, count)
    if index is None:
        raise CommandError(f"--layer {text}: {block} has {count} branch(es); give a number from 1 to {count}"
                           if count else f"--layer {text}: {block} is not a block with branches")
    return block, index


def _overlay_png(rgb, heat) -> bytes:
    """The map over the picture as PNG bytes (pytorch-grad-cam's overlay: JET colours, 50 % blend); signed
    maps are drawn by magnitude (the .npy keeps the sign)."""
    import io

    from PIL import Image

    from explorer.core.lecture.handout import heat_overlay

    buf = io.BytesIO()
    Image.fromarray(heat_overlay(rgb, heat)).save(buf, format="PNG")
    return buf.getvalue()


def _npy_bytes(array) -> bytes:
    """`array` as the bytes of a .npy file."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _output_folder(text: str):
    """-o FOLDER checked before any work: `-` is refused (image files cannot go to stdout, and a folder named
    "-" is never meant), and so is a file; a folder that cannot be made is found when it is made."""
    import os
    from pathlib import Path

    if text == "-":
        raise CommandError("-o -: this command writes image files, which need a folder; give -o FOLDER")
    if os.path.exists(text) and not os.path.isdir(text):  # (os.path: a name too long is not an error here)
        raise CommandError(f"-o {text}: not a folder")
    return Path(text)


def cmd_attribute(args) -> int:
    """Attribution maps for image files and folders, with faithfulness metrics; one stderr line per
    file that cannot be read, a record (JSON Lines, a JSON array or CSV rows) written as each map completes."""
    from pathlib import Path

    from explorer.core.classify.images import ImageLoadError
    from explorer.core.classify.provenance import provenance_of
    from explorer.core.outputs import Inputs, OutputError, fit_stem, make_folder
    from explorer.core.records import record_writer

    methods, metrics, ref, files, out_dir = _attribute_arguments(args)
    model = _attribute_model(args, ref, methods)
    if out_dir is not None:
        try:
            make_folder(out_dir)
        except OutputError as e:
            raise CommandError(str(e), EXIT_FAILED) from None
    inputs = Inputs([*files, args.model, *([args.weights] if args.weights else [])])
    # Every map of an image shares one stem, shortened (with a hash) when its longest name would not fit.
    suffix_bytes = max(len(f".{m}.npy".encode()) for m in methods)
    provenance = provenance_of(ref, model[1].loaded, model[1].transforms)
    writer = record_writer(args.format, sys.stdout, ATTRIBUTE_CSV_COLUMNS, _attribute_csv_rows)
    run = _AttributeRun(args, methods, metrics, model, out_dir, inputs, writer.write, provenance)
    stems: set[str] = set()
    ok = failed = unwritten = 0
    try:
        for path in files:
            try:
                x = run.clf.preprocess(path).unsqueeze(0)
            except ImageLoadError as e:
                failed += 1
                print(f"inception-explorer: cannot attribute {path}: {e.reason}", file=sys.stderr)
                continue
            ok += 1
            stem = Path(path).stem
            while stem in stems:  # two folders, one file name: keep both maps
                stem += "_"
            stems.add(stem)
            unwritten += run.image(path, x, fit_stem(stem, suffix_bytes))
    finally:
        writer.close()  # the JSON array's end, on Ctrl-C too
    if ok == 0:
        print(f"inception-explorer: error: none of the {failed} input(s) could be read", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if unwritten else 0


def _attribute_arguments(args) -> tuple:
    """(methods, metrics, model reference, image files, output folder or None) of `attribute`, checked
    before the model loads: a bad one is one line."""
    import os

    from explorer.core.attribution.methods import METHODS

    methods = _attribute_choices(args.method, METHODS, "method")
    metrics = _attribute_choices(args.metrics, ATTRIBUTE_METRICS, "metric") if args.metrics else []
    if not 1 <= args.steps <= 1000:
        raise CommandError(f"--steps {args.steps} must be from 1 to 1000")
    ref = _model_ref(args.model)
    if args.target is not None and args.target < 0:
        raise CommandError(f"--target {args.target} must be a class index from 0")
    from explorer.core.classify.images import expand_inputs

    out_dir = _output_folder(args.output) if args.output else None
    if args.masks is not None and not os.path.isdir(args.masks):
        raise CommandError(f"--masks {args.masks}: not a folder (it holds one PNG mask per image, named like it)")
    files = expand_inputs(args.inputs)
    if not files:
        raise CommandError("no image files found in " + ", ".join(args.inputs), EXIT_FAILED)
    return methods, metrics, ref, files, out_dir


def _attribute_model(args, ref: str, methods: list[str]):
    """(device, Classifier on the CPU, its CaptureModel, CAM node, CAM branch index) of `attribute`; a device
    this machine lacks, weights that cannot be loaded or a model without probes is one line, exit 1."""
    from explorer.core.classify.inference import DeviceUnavailableError, resolve_device

    try:
        device = resolve_device(args.device)
    except DeviceUnavailableError as e:
        raise CommandError(f"--device {args.device}: {e}", EXIT_FAILED) from None
    # Images are decoded and preprocessed on the CPU (exact, as torchvision's PIL path) and moved to
    # `device`; the network there is a plain copy (no folded batch norms: the gradients are the model's).
    _, clf, cm = _probed_model(args, ref)
    node, branch = _attribute_layer(args.layer, cm, methods, clf.graph)
    classes = len(clf.categories)
    if args.target is not None and args.target >= classes:
        raise CommandError(f"--target {args.target}: the model has {classes} classes (0 to {classes - 1})")
    return device, clf, cm, node, branch


class _AttributeRun:
    """One `attribute` run: the model (see _attribute_model), the methods and metrics asked for, the folder
    the maps go to (None: no files), the run's inputs (never overwritten), the writer of each record and the
    provenance every record carries."""

    def __init__(self, args, methods: list[str], metrics: list[str], model, out_dir, inputs, write, provenance):
        from explorer.core.model.loading import has_learned_weights

        self.args, self.methods, self.metrics = args, methods, metrics
        self.device, self.clf, self.cm, self.node, self.branch = model
        self.out_dir, self.inputs, self.write, self.provenance = out_dir, inputs, write, provenance
        #: Learned weights (not random): only then can a map, its curves or its sanity check mean anything.
        self.learned = has_learned_weights(self.clf.loaded)
        from explorer.core.attribution.methods import AttributionParams, with_normalisation

        #: The methods' parameters: the defaults, with the black baseline where this model's input puts black.
        self.params = with_normalisation(AttributionParams(), self.clf.transforms)

    def image(self, path, x, stem: str) -> int:
        """Every method's record of one preprocessed image `x` (a batch of one), each written as it completes;
        how many of them lost their files (written without them)."""
        import time

        import torch

        from explorer.core.attribution.methods import branch_shares

        rgb = self.clf.input_rgb(x[0])
        mask = self.mask(path) if self.args.masks is not None else None
        x_dev, cm_dev = x.to(self.device), self.clf.capture_model(self.device)
        with torch.no_grad():
            target = int(cm_dev(x_dev).argmax(1)) if self.args.target is None else self.args.target
        t0 = time.perf_counter()
        shares = branch_shares(cm_dev, x_dev, target)
        shares_ms = (time.perf_counter() - t0) * 1000
        references = None  # the random-order curves: the same for every method of the image, computed once
        unwritten = 0
        for method in self.methods:
            record, r, references = self.record(path, x, method, target, shares, shares_ms, references)
            if self.args.masks is not None:
                from explorer.core.attribution.localisation import localise

                record["localisation"] = None if mask is None else localise(r.heatmap, mask).to_dict()
            if not self.report(record, r.heatmap, rgb, stem, method):
                unwritten += 1
        return unwritten

    def mask(self, path):
        """The object's mask for image `path` (--masks DIR/<its stem>.png) as the network input sees the image, or
        None, said in one line, when there is none or it does not fit the image (its records' localisation: null)."""
        from pathlib import Path

        from explorer.core.attribution.localisation import input_mask, read_mask
        from explorer.core.classify.images import ImageLoadError

        file = Path(self.args.masks) / f"{Path(path).stem}.png"
        try:
            mask = read_mask(file)
            size = self.clf.decoder.load_cpu(path, str(path)).size  # (w, h), upright as the network sees it
        except FileNotFoundError:
            print(f"inception-explorer: note: no mask {file} for {path}: no localisation", file=sys.stderr)
            return None
        except (ValueError, OSError, ImageLoadError) as e:
            print(f"inception-explorer: note: mask {file} for {path}: {e}: no localisation", file=sys.stderr)
            return None
        if mask.shape != (size[1], size[0]):
            print(f"inception-explorer: note: mask {file} is {mask.shape[1]}×{mask.shape[0]}, the image {size[0]}×"
                  f"{size[1]}: no localisation", file=sys.stderr)
            return None
        return input_mask(mask, self.clf.transforms)

    def layer(self, method: str) -> dict:
        """`attribute`'s keywords for `method`: the parameters, and a CAM method's node and branch."""
        from explorer.core.attribution.methods import CAM_METHODS

        return dict(params=self.params) | (dict(node=self.node, branch=self.branch) if method in CAM_METHODS else {})

    def record(self, path, x, method: str, target: int, shares: dict, shares_ms: float, references):
        """(record, AttributionResult, the image's random-order curves) of one method's map: what it explains,
        its metrics, the branch shares (with their time), the timings and its provenance (the model, weights,
        device it was computed on, input size and preprocessing)."""
        import time

        from explorer.core.attribution.methods import attribute_on_device

        t0 = time.perf_counter()
        r = attribute_on_device(self.clf.capture_model, x, method, target, device=self.device, **self.layer(method))
        timings = {"attribution_ms": (time.perf_counter() - t0) * 1000, "branch_shares_ms": shares_ms}
        record = {"path": str(path), "method": method, "target": target,
                  "label": self.clf.categories[target], "layer": r.layer, "weights_learned": self.learned}
        if not self.learned:
            from explorer.core.model.weights import UNLEARNED_CAVEAT

            record["caveat"] = UNLEARNED_CAVEAT
        # The metrics run where the map was computed (the CPU when the GPU ran out of memory for it).
        cm_map, xm = self.clf.capture_model(r.device), x.to(r.device)
        if r.delta is not None:
            record.update(delta=r.delta, delta_relative=r.delta_relative)
        if r.notice:
            record["notice"] = r.notice
            print(f"inception-explorer: note: {path} {method}: {r.notice}", file=sys.stderr)
        metrics, metric_timings, references = self.measure(r.heatmap, cm_map, xm, x, method, target, references)
        record.update(metrics)
        timings.update(metric_timings)
        record["branch_shares"] = {b: [round(v, 6) for v in vs] for b, vs in shares.items()}
        record["timings"] = {k: round(v, 2) for k, v in timings.items()}
        record["provenance"] = self.provenance.to_dict(r.device)
        return record, r, references

    def measure(self, heatmap, cm_map, xm, x, method: str, target: int, references):
        """(metrics, their times, the random-order curves for the image's next method) of one map: the curves
        and the sanity check on the capture model and image `cm_map`, `xm` where the map was computed, ROAD
        on the CPU (`x`); `references`: the image's random-order curves so far (None: none yet)."""
        import time

        from explorer.core.attribution import faithfulness
        from explorer.core.attribution.faithfulness import faithfulness_curves, sanity_blocks, sanity_check, sanity_verdict
        from explorer.core.attribution.methods import attribute

        metrics: dict = {}
        timings: dict = {}
        kinds = [k for k in ("deletion", "insertion") if k in self.metrics]
        if kinds:
            t0 = time.perf_counter()
            substrate = self.args.deletion_substrate or faithfulness.DELETION_SUBSTRATE  # the window's
            curves = faithfulness_curves(cm_map, xm, heatmap, target, kinds=kinds, steps=self.args.steps,
                                         random_scores=references, deletion_substrate=substrate)
            references = {k: c.random_runs for k, c in curves.items()}
            timings["curves_ms"] = (time.perf_counter() - t0) * 1000
            metrics.update({k: c.to_dict() for k, c in curves.items()})
        if "sanity" in self.metrics:
            kw = self.layer(method)
            t0 = time.perf_counter()
            check = sanity_check(cm_map, lambda m: attribute(m, xm, method, target, **kw).heatmap,
                                 original=heatmap, blocks=sanity_blocks(cm_map, 5))
            timings["sanity_ms"] = (time.perf_counter() - t0) * 1000
            metrics["sanity"] = check.to_dict() | {"verdict": sanity_verdict(check, self.learned)}
        metrics_, timings_ = self.measure_new(heatmap, cm_map, xm, method, target)
        metrics.update(metrics_)
        timings.update(timings_)
        return metrics, timings, references

    def measure_new(self, heatmap, cm_map, xm, method: str, target: int):
        """(metrics, their times) of issue 27's metrics asked for (attribution/metrics.py): SRG and ROAD on the
        capture model and image where the map was computed (ROAD's imputation solves on the CPU, its forwards run
        there), smooth and efficient MPRT re-explaining with the map's own method on randomised copies."""
        import time

        from explorer.core.attribution import faithfulness
        from explorer.core.attribution import metrics as m

        out: dict = {}
        timings: dict = {}
        explain = m.method_explainer(method, target, **self.layer(method))
        runs = {"road": lambda: m.road(cm_map, xm, heatmap, target, percentages=faithfulness.ROAD_PERCENTILES,
                                       seeds=m.NOISE_SEEDS),
                "srg": lambda: m.srg(cm_map, xm, heatmap, target, steps=self.args.steps, deletion_substrate=(
                    self.args.deletion_substrate or faithfulness.DELETION_SUBSTRATE)),
                "smooth_mprt": lambda: m.smooth_mprt(cm_map, xm, explain, samples=m.SMOOTH_SAMPLES,
                                                     seeds=m.NOISE_SEEDS),
                "efficient_mprt": lambda: m.efficient_mprt(cm_map, xm, explain, seeds=m.NOISE_SEEDS)}
        for name, run in runs.items():
            if name in self.metrics:
                t0 = time.perf_counter()
                out[name] = run().to_dict()
                timings[f"{name}_ms"] = (time.perf_counter() - t0) * 1000
        return out, timings

    def report(self, record: dict, heatmap, rgb, stem: str, method: str) -> bool:
        """Write `record`; with -o, the map's .png and .npy appear together with the line that reports them,
        or none of the three. False: the files could not be written (one line), the record went without them."""
        import numpy as np

        from explorer.core.outputs import OutputError, write_files

        if self.out_dir is None:
            self.write(record)
            return True
        png, npy = self.out_dir / f"{stem}.{method}.png", self.out_dir / f"{stem}.{method}.npy"
        record.update(png=str(png), npy=str(npy))
        try:
            write_files({npy: _npy_bytes(heatmap.astype(np.float32)), png: _overlay_png(rgb, heatmap)},
                        inputs=self.inputs, report=lambda: self.write(record))
        except OutputError as e:  # the result is still reported, without files; the batch goes on
            del record["png"], record["npy"]
            print(f"inception-explorer: {e}", file=sys.stderr, flush=True)
            self.write(record)
            return False
        return True


def _metric_cells(record: dict) -> list:
    """ROAD's combined score, SRG, smooth and efficient MPRT (their means over seeds), each with whether its interval
    cleared its reference (a metric not asked for: empty cells)."""
    cells = []
    for name in ("road", "srg", "smooth_mprt", "efficient_mprt"):
        m = record.get(name)
        value = "" if m is None else (m["combined"] if name == "road" else m["value"])
        cells += ["" if value is None else value, "" if m is None else m["clears_reference"]]
    return cells


def _attribute_csv_rows(record: dict) -> list[list]:
    """The one ATTRIBUTE_CSV_COLUMNS row of a record (a metric not asked for: an empty cell)."""
    from explorer.core.classify.provenance import provenance_cells

    d, i, s = record.get("deletion", {}), record.get("insertion", {}), record.get("sanity", {})
    loc = record.get("localisation") or {}
    share = loc.get("inside_share")
    return [[record["path"], record["method"], record["target"], record["label"], record["layer"] or "",
             d.get("auc", ""), d.get("random_auc", ""), i.get("auc", ""),
             i.get("random_auc", ""), d.get("better_than_random", ""), i.get("better_than_random", ""),
             d.get("substrate", ""),
             loc.get("pointing", ""), "" if share is None else share,
             (s.get("correlations") or [""])[-1] if s else "",
             s.get("flagged", ""), *_metric_cells(record),
             record.get("delta", ""), record.get("delta_relative", ""),
             record.get("notice", ""), record["timings"]["attribution_ms"], record.get("png", ""),
             record.get("npy", ""), *provenance_cells(record.get("provenance"))]]


#: The CSV columns of `ablate`: a row per image and branch, the plain network's values repeated on each.
ABLATE_CSV_COLUMNS = ("path", "mode", "target", "label", "block", "branch", "delta_logit", "delta_prob", "logit", "prob",
                      "top1", "top1_label", "top1_changed", "plain_logit", "plain_prob", "plain_top1",
                      "model", "weights", "weights_sha256", "device", "input_size", "resize", "crop", "interpolation",
                      "mean", "std")


def cmd_ablate(args) -> int:
    """Each branch (of --blocks, default every block) knocked out on its own, per image: the change in the target's
    logit and probability and the new top-1; one stderr line per file that cannot be read, a record per image
    written as it completes, and exit 1 at the end when any file failed."""
    import time

    from explorer.core.attribution.knockout import KnockoutNetwork
    from explorer.core.classify.images import ImageLoadError, expand_inputs
    from explorer.core.classify.provenance import provenance_of

    ref = _model_ref(args.model)
    if args.target is not None and args.target < 0:
        raise CommandError(f"--target {args.target} must be a class index from 0")
    if args.by_class is not None and args.target is not None:
        raise CommandError("--by-class groups each image by its own top-1: it takes no --target")
    files = expand_inputs(args.inputs)
    if not files:
        raise CommandError("no image files found in " + ", ".join(args.inputs), EXIT_FAILED)
    loaded, clf, cm = _ablate_model(args, ref)
    branches = _ablate_branches(args.blocks, cm)
    classes = len(clf.categories)
    if args.target is not None and args.target >= classes:
        raise CommandError(f"--target {args.target}: the model has {classes} classes (0 to {classes - 1})")
    net = KnockoutNetwork(cm)
    if net.shared_pass_problem:
        raise CommandError(f"{ref}: cannot knock out its branches: {net.shared_pass_problem}", EXIT_FAILED)
    from explorer.core.model.loading import has_learned_weights

    learned = has_learned_weights(loaded)
    write = _ablate_writer(args.format, provenance_of(ref, loaded, clf.transforms), clf.categories, learned)
    ok = failed = 0
    done = []  # (image, BranchEffects) for --by-class
    try:
        for path in files:
            try:
                x = clf.preprocess(path).unsqueeze(0)
            except ImageLoadError as e:
                failed += 1
                print(f"inception-explorer: cannot ablate {path}: {e.reason}", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            effects = net.effects(x, target=args.target, mode=args.mode, branches=branches)
            write(str(path), effects, (time.perf_counter() - t0) * 1000)
            ok += 1
            if args.by_class is not None:
                done.append((str(path), effects))
    finally:
        write.close()  # the JSON array's end, on Ctrl-C too
    if ok == 0:
        print(f"inception-explorer: error: none of the {failed} input(s) could be read", file=sys.stderr)
    elif args.by_class is not None:
        _ablate_by_class(done, clf.categories, args.by_class, files)
    return EXIT_FAILED if failed else 0


def _ablate_by_class(done, categories, png: str, inputs) -> None:
    """What each branch is for over the images: the table on stderr, the heat map into `png` when named."""
    from explorer.core.attribution.anatomy import branch_roles, roles_table, write_heatmap
    from explorer.core.outputs import Inputs, OutputError
    from explorer.core.text import branch_number

    roles = branch_roles(done)
    print("mean change in each predicted class's probability with one branch off:", file=sys.stderr)
    print(roles_table(roles, categories), file=sys.stderr)
    for b in roles.branches:
        image, delta = roles.strongest[b]
        tops = ", ".join(f"{categories[c]} {100 * d:+.1f} %" for c, d in roles.top_classes(b, 2))
        print(f"{b[0]}/{branch_number(b[1])}: matters most for {tops}; most of all on {image} ({100 * delta:+.1f} %)",
              file=sys.stderr)
    if png:
        try:
            write_heatmap(roles, categories, png, inputs=Inputs([str(p) for p in inputs]))
        except OutputError as e:
            raise CommandError(str(e), EXIT_FAILED) from None
        print(f"inception-explorer: wrote {png}", file=sys.stderr)


def _probed_model(args, ref: str):
    """(LoadedModel, Classifier on the CPU, its CaptureModel) of `attribute` and `ablate`, the weights' warning on
    stderr; weights that cannot be loaded or a model without probes is one line, exit 1."""
    from explorer.core.classify.inference import Classifier
    from explorer.core.graph.blockgraph import build_block_graph

    loaded, graph = _load_model(ref, args.weights, need_classes=True)
    if loaded.weights.is_random:
        from explorer.core.model.weights import UNLEARNED_CAVEAT

        print(f"inception-explorer: warning: {loaded.weights.describe()}", file=sys.stderr)
        print(f"inception-explorer: warning: {UNLEARNED_CAVEAT}", file=sys.stderr)
    clf = Classifier(loaded, "cpu", optimize=False, graph=graph or build_block_graph(loaded.spec))
    try:
        cm = clf.capture_model("cpu")
    except RuntimeError as e:  # a module tree (an untraceable forward, a vision transformer): no probes
        raise CommandError(f"{ref}: cannot probe its layers: {clf.graph.dataflow_reason or e}", EXIT_FAILED) from None
    return loaded, clf, cm


def _ablate_model(args, ref: str):
    """(LoadedModel, Classifier on the CPU, its CaptureModel) of `ablate` (see _probed_model); a model without
    branches is one line, exit 1."""
    loaded, clf, cm = _probed_model(args, ref)
    if not cm.block_branches:
        raise CommandError(f"{ref}: the model has no blocks with branches to knock out", EXIT_FAILED)
    return loaded, clf, cm


def _ablate_branches(blocks: list[str] | None, cm) -> list[tuple[str, int]]:
    """The (block, branch_index) pairs of `--blocks B[/BRANCH]…` (BRANCH 1-based), in the order given, each once;
    none given: every branch of every block."""
    if not blocks:
        return [(b, k) for b, count in cm.block_branches.items() for k in range(count)]
    chosen: dict[tuple[str, int], None] = {}
    for text in blocks:
        node, branch = _node_branch(text, cm)
        count = cm.block_branches.get(node, 0)
        if not count:
            raise CommandError(f"--blocks {text}: {node} is not a block with branches; blocks: "
                               + ", ".join(cm.block_branches))
        for k in ([branch] if branch is not None else range(count)):
            chosen[(node, k)] = None
    return list(chosen)


class _AblateWriter:
    """write(path, BranchEffects, ms): a record per image (its branches in a list) as JSON Lines or a JSON array,
    a row per branch in CSV, or a table; close() ends the array."""

    def __init__(self, fmt: str, provenance, categories: list[str], learned: bool):
        self.fmt, self.provenance, self.categories, self.learned = fmt, provenance, categories, learned
        if fmt != "table":
            from explorer.core.records import record_writer

            self.records = record_writer(fmt, sys.stdout, ABLATE_CSV_COLUMNS, _ablate_csv_rows)

    def record(self, path: str, r, ms: float) -> dict:
        from explorer.core.text import branch_number

        names = self.categories
        record = {"path": path, "mode": r.mode, "target": r.target, "label": names[r.target], "logit": r.logit,
                  "prob": r.prob, "top1": r.top1, "top1_label": names[r.top1], "weights_learned": self.learned,
                  "branches": [{"block": e.block, "branch": branch_number(e.branch_index), "delta_logit": e.delta_logit,
                                "delta_prob": e.delta_prob, "logit": e.logit, "prob": e.prob, "top1": e.top1,
                                "top1_label": names[e.top1], "top1_changed": e.top1_changed} for e in r.effects]}
        if not self.learned:
            from explorer.core.model.weights import UNLEARNED_CAVEAT

            record["caveat"] = UNLEARNED_CAVEAT
        record["timings"] = {"ablate_ms": round(ms, 2)}
        record["provenance"] = self.provenance.to_dict("cpu")
        return record

    def __call__(self, path: str, r, ms: float) -> None:
        if self.fmt != "table":
            self.records.write(self.record(path, r, ms))
            return
        from explorer.core.text import fmt_branch, fmt_fraction

        names = self.categories
        print(f"{path}  ({r.mode} knock-outs of class {r.target} {names[r.target]}: logit {r.logit:.3f}, "
              f"{fmt_fraction(r.prob)}; top-1 {names[r.top1]} ({r.top1}); {ms:.0f} ms)")
        width = max((len(e.block) for e in r.effects), default=0)
        for e in r.effects:
            mark = "  top-1 changed" if e.top1_changed else ""
            print(f"  {e.block:{width}s} {fmt_branch(e.branch_index):9s}  Δlogit {e.delta_logit:+9.3f}  "
                  f"Δprob {fmt_fraction(e.delta_prob, signed=True):>8}  top-1 {names[e.top1]} ({e.top1}){mark}")
        sys.stdout.flush()

    def close(self) -> None:
        if self.fmt != "table":
            self.records.close()


def _ablate_writer(fmt: str, provenance, categories, learned: bool) -> _AblateWriter:
    _ = provenance.weights_sha256  # the weight file is read for its hash now, once
    return _AblateWriter(fmt, provenance, list(categories), learned)


def _ablate_csv_rows(record: dict) -> list[list]:
    """One ABLATE_CSV_COLUMNS row per branch of a record, with its provenance cells."""
    from explorer.core.classify.provenance import provenance_cells

    cells = provenance_cells(record.get("provenance"))
    return [[record["path"], record["mode"], record["target"], record["label"], b["block"], b["branch"],
             b["delta_logit"], b["delta_prob"], b["logit"], b["prob"], b["top1"], b["top1_label"], b["top1_changed"],
             record["logit"], record["prob"], record["top1"], *cells] for b in record["branches"]]


def cmd_handout(args) -> int:
    """One PDF of a model (and an image): block graph, paper table, shape trace, top-5, feature maps and an
    attribution. Drawn with Qt's PDF writer, offscreen: the Qt renderer is imported by name here only, so
    no other command (and no static import of explorer.cli) pulls in Qt."""
    ref, size, out, inputs = _handout_arguments(args)
    graph, handout = _handout_content(args, ref, size)
    pdf = _handout_renderer()
    pdf.ensure_app()
    drawings = pdf.record_drawings(graph, handout.trace, handout.drawings)
    _write_handout(pdf, handout, drawings, out, inputs)
    return 0


def _handout_arguments(args):
    """(model reference, trace size or None, the PDF's path or None for stdout, the inputs) of `handout`,
    checked before the model loads: a bad one, a destination that cannot be written, or an image that is not a
    regular file is one line."""
    import os
    from pathlib import Path

    from explorer.core.classify.images import ImageLoadError
    from explorer.core.outputs import Inputs
    from explorer.core.shapes.trace import parse_size

    ref = _model_ref(args.model)
    to_stdout = args.output == "-"  # `-o -`: the PDF on stdout, never a file named "-"
    out = Path(args.output)
    try:
        size = parse_size(args.size) if args.size is not None else None
    except ValueError as e:
        raise CommandError(str(e)) from None
    if to_stdout:
        if sys.stdout.isatty():
            raise CommandError("-o -: stdout is a terminal; redirect it to a file or give -o FILE.pdf")
    elif os.path.isdir(out):
        raise CommandError(f"-o {out}: is a folder")
    else:
        parent = out.parent if str(out.parent) else Path(".")
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            raise CommandError(f"-o {out}: cannot write in {parent}", EXIT_FAILED)
    if args.image is not None:
        try:
            _check_regular(args.image)
        except ImageLoadError as e:
            raise CommandError(f"--image {e}", EXIT_FAILED) from None
    inputs = Inputs([args.model, *(p for p in (args.image, args.weights) if p)])
    if not to_stdout and out in inputs:
        raise CommandError(f"-o {out}: it is one of the inputs; not overwritten")
    return ref, size, None if to_stdout else out, inputs


def _handout_content(args, ref: str, size):
    """(BlockGraph, Handout) of `handout`: the model loaded, its blocks checked and the content built; a
    block, weights, size or image that does not work is one line."""
    from explorer.core.classify.images import ImageLoadError
    from explorer.core.lecture.handout import build_handout, check_blocks
    from explorer.core.shapes.trace import InputTooSmallError

    loaded, graph = _load_model(ref, args.weights)
    if graph is None:
        from explorer.core.model.graphs import zoo_block_graph

        graph = zoo_block_graph(ref)
    try:
        blocks = check_blocks(graph, args.block)
    except ValueError as e:
        raise CommandError(f"--block: {e}") from None
    if loaded.weights.is_random:
        print(f"inception-explorer: warning: {loaded.weights.describe()}", file=sys.stderr)
    try:
        handout = build_handout(loaded, graph, size or graph.native_size, image=args.image, blocks=blocks)
    except InputTooSmallError as e:
        raise CommandError(str(e), EXIT_FAILED) from None
    except ImageLoadError as e:
        raise CommandError(f"--image {e}", EXIT_FAILED) from None
    return graph, handout


def _handout_renderer():
    """explorer.qt.lecture.handout_pdf, imported by name (no static import of Qt from the command line);
    a Qt that cannot be loaded is one line, exit 1."""
    import importlib

    try:
        return importlib.import_module("explorer.qt.lecture.handout_pdf")
    except ImportError as e:
        raise CommandError(f"the handout is drawn with Qt, which cannot be loaded here: {e}", EXIT_FAILED) from None


def _write_handout(pdf, handout, drawings, out, inputs) -> None:
    """The PDF to `out` (None: stdout), with its one line on stderr; a file that cannot be written, or a
    drawing that fails, is one line, exit 1 (a closed pipe stays a BrokenPipeError, for main)."""
    from explorer.core.outputs import OutputError

    try:
        if out is None:
            _handout_to_stdout(pdf.render_pdf(handout, drawings))
            print(f"wrote the PDF to stdout ({handout.title})", file=sys.stderr)
        else:  # the line is written with the file in place: Ctrl-C leaves both or neither
            pdf.write_pdf(handout, drawings, out, inputs=inputs,
                          report=lambda: print(f"wrote {out} ({handout.title})", file=sys.stderr))
    except BrokenPipeError:
        raise
    except (OutputError, RuntimeError) as e:
        raise CommandError(str(e), EXIT_FAILED) from None
    except OSError as e:
        from explorer.core.outputs import reason

        raise CommandError(f"cannot write {'stdout' if out is None else out}: {reason(e)}", EXIT_FAILED) from None


def _handout_to_stdout(data: bytes) -> None:
    """The PDF's bytes on stdout, after any text already there; a device that fails is _StdoutFailed."""
    sys.stdout.flush()
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise _StdoutFailed(e) from None


def _check_regular(path: str) -> None:
    """ImageLoadError unless `path` is a regular file: a FIFO, a device or a folder is named as such (never
    opened: a FIFO would block)."""
    import os

    from explorer.core.classify import images

    if os.path.isdir(path):
        raise images.ImageLoadError(path, "a folder, not an image")
    images.check_regular_file(path)


def build_parser() -> argparse.ArgumentParser:
    from explorer.core.classify.images import MAX_PIXELS_LIMIT
    from explorer.core.shapes.trace import MAX_BATCH, MAX_INPUT_SIDE

    p = _Parser(prog="inception-explorer", description="Look inside Inception-family networks.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    s = sub.add_parser("gui", help="open the window (what `inception-explorer` alone does; gui --help: its options)",
                       add_help=False)
    s.add_argument("options", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_gui)
    s = sub.add_parser("models", help="list the model zoo and its weights")
    s.add_argument("--all", action="store_true", help="also every torchvision and timm model that opens by name")
    s.set_defaults(func=cmd_models)
    s = sub.add_parser("trace", help="trace every node's output shape, params and multiply-adds")
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("--size", default=None,
                   help=f"input size: H or HxW (default: the model's own, 299 for inception_v3; at most {MAX_INPUT_SIDE}"
                   " per side)")
    s.add_argument("--batch", type=int, default=1, help=f"batch size N (default 1; at most {MAX_BATCH})")
    s.add_argument("--format", choices=("table", "json", "csv", "markdown"), default="table")
    s.set_defaults(func=cmd_trace)
    s = sub.add_parser("classify", help="top-k ImageNet classes of image files and folders")
    s.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument(
        "--weights",
        help="a .pth/.pt/.safetensors file, or 'none' for random weights (default: the published weights "
        "from the torch hub or Hugging Face Hub cache, or a download; seeded random weights, with a warning "
        "saying why, when neither works or none are published)",
    )
    s.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto: CUDA when this torch build can run the GPU; on CUDA the network input is "
                   "within a grey level of torchvision's PIL reference, as with --fast-decode "
                   "(the CPU's default is exact)")
    s.add_argument("--top", type=int, default=5, help="classes per image (default 5)")
    s.add_argument("--batch", type=int, default=None,
                   help=f"images per forward pass (default 64 on CUDA, 8 on the CPU; at most {MAX_BATCH})")
    s.add_argument("--max-megapixels", dest="max_pixels", type=float, default=None, metavar="MP",
                   help="refuse images larger than this, before or after the resize (decompression-bomb "
                   f"guard; default 100, at most {MAX_PIXELS_LIMIT / 1e6:g})")
    decode = s.add_mutually_exclusive_group()
    decode.add_argument("--fast-decode", action="store_true",
                        help="decode big JPEGs at a reduced scale on the CPU: several times faster, inputs within "
                        "~0.5 grey levels of torchvision's; each result so decoded says so (default: exact, "
                        "the same preprocessing as torchvision's weights.transforms() on the PIL image)")
    decode.add_argument("--exact-decode", action="store_true",
                        help="the default (kept for compatibility)")
    s.add_argument("--format", choices=("table", "jsonl", "json", "csv"), default="table",
                   help="jsonl: one JSON object per image a line; json: one JSON array; csv: a row per class; each "
                   "record names the model, weights (file and sha256, or random), device, input size and "
                   "preprocessing; every format is written as results complete")
    s.set_defaults(func=cmd_classify)
    _add_attribute_parser(sub)
    s = sub.add_parser("handout", help="one PDF of a model (and an image) for a class: graph, paper table, shapes, "
                       "top-5, feature maps, attribution")
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("--image", metavar="FILE", help="an image: its top-5, the blocks' feature maps and a Grad-CAM")
    s.add_argument("--size", default=None, help="input size of the shape trace: H or HxW (default: the model's own)")
    s.add_argument("--block", nargs="+", metavar="NAME", help="blocks whose branches are shown (default: the first "
                   "Inception block, else the first block)")
    s.add_argument("--weights", help="a .pth/.pt/.safetensors file, or 'none' for random weights (default: the "
                   "published weights from the cache or a download; random, with a warning, when neither works)")
    s.add_argument("-o", "--output", required=True, metavar="FILE.pdf",
                   help="where the PDF is written (whole or not at all; never over an input); - for stdout")
    s.set_defaults(func=cmd_handout)
    _add_featurevis_parsers(sub)
    _add_ablate_parser(sub)
    _add_train_demo_parser(sub)
    _add_draw_shapes_parser(sub)
    return p


def _add_attribute_parser(sub) -> None:
    s = sub.add_parser("attribute", help="attribution maps of image files and folders, with faithfulness metrics")
    s.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--weights", help="a .pth/.pt/.safetensors file, or 'none' for random weights (default: the "
                   "published weights from the torch hub cache or a download; random, with a warning, when neither works)")
    s.add_argument("--method", required=True, metavar="M[,M…]",
                   help="comma-separated: integrated_gradients, saliency, grad_cam, occlusion, grad_cam_plus_plus, "
                   "score_cam, eigen_cam, layer_cam, hires_cam, xgrad_cam, smoothgrad_integrated_gradients, "
                   "smoothgrad_saliency")
    s.add_argument("--target", type=int, default=None, metavar="CLASS",
                   help="class index to explain (default: each image's top-1)")
    s.add_argument("--layer", metavar="BLOCK[/BRANCH]",
                   help="where CAM methods look: a block, or one of its branches (1-based, as in Details); "
                   "default: the last block")
    s.add_argument("--metrics", metavar="M[,M…]",
                   help="comma-separated: deletion, insertion (areas under the curves, with a random-order "
                   "reference), sanity (rank correlation as the top 5 blocks are randomised), road (MoRF, LeRF and their "
                   "combination with noisy linear imputation, over 3 noise seeds, against random orders), srg (symmetric "
                   "relevance gain, against random orders), smooth_mprt and efficient_mprt (the map against the "
                   "fully randomised model's, over 3 seeds); each an interval with a verdict only when it clears its "
                   "reference")
    s.add_argument("--steps", type=int, default=50,
                   help="steps of the deletion and insertion curves (default 50: 2 %% of the pixels each)")
    # None: faithfulness.DELETION_SUBSTRATE, the window's (the parser imports no numpy to name it).
    s.add_argument("--deletion-substrate", dest="deletion_substrate", choices=("zero", "blur"), default=None,
                   help="what deleted pixels become: blur (the image blurred, as insertion starts from; the default, "
                   "as in the window) or zero (the mean colour, as RISE's code; a flat colour leaves the removed "
                   "object's outline, which on drawn shapes is the evidence itself)")
    s.add_argument("--masks", metavar="DIR",
                   help="the objects' masks, one PNG per image named like it (IMAGE.png for IMAGE.jpg; white: "
                   "the object), as draw-shapes writes them: each record gains localisation {pointing, "
                   "inside_share} against the mask, brought to the network input as the image is")
    s.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="where the maps and metrics are computed (auto: CUDA when this torch build can run the "
                   "GPU); a GPU that runs out of memory for a map leaves it to the CPU, with a note")
    s.add_argument("--format", choices=("jsonl", "json", "csv"), default="jsonl",
                   help="jsonl (default): one JSON object per image and method a line; json: one JSON array; csv: a "
                   "row each; written as each map completes, each naming the model, weights (file and sha256, or "
                   "random), device, input size and preprocessing")
    s.add_argument("-o", "--output", metavar="DIR", help="write each map as a PNG overlay and a .npy array here")
    s.set_defaults(func=cmd_attribute)


def _add_ablate_parser(sub) -> None:
    s = sub.add_parser("ablate", help="knock each branch out on its own: the change in the target's logit and "
                       "probability, and the new top-1, per image")
    s.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--weights", help="a .pth/.pt/.safetensors file, or 'none' for random weights (default: the "
                   "published weights from the torch hub cache or a download; random, with a warning, when neither works)")
    s.add_argument("--blocks", nargs="+", metavar="B[/BRANCH]",
                   help="the blocks whose branches are knocked out, or single branches (1-based, as in Details): "
                   "inception4a inception5b/2 (default: every branch of every block)")
    s.add_argument("--mode", choices=("zero", "mean"), default="zero",
                   help="what a knocked-out branch becomes: zeros (default), or each channel's mean over the image, "
                   "which keeps the block's statistics")
    s.add_argument("--target", type=int, default=None, metavar="CLASS",
                   help="the class whose logit and probability are followed (default: each image's top-1)")
    s.add_argument("--format", choices=("table", "jsonl", "json", "csv"), default="table",
                   help="table (default); jsonl: one JSON object per image a line, its branches in a list; json: one "
                   "JSON array; csv: a row per image and branch; each record names the model, weights (file and "
                   "sha256, or random), device, input size and preprocessing; written as each image completes")
    s.add_argument("--by-class", metavar="PNG", nargs="?", const="", default=None,
                   help="after the images, what each branch is for: the mean change in each predicted class's "
                   "probability when the branch alone is off, a row per branch and a column per class, on stderr "
                   "(stdout keeps the records); with a file name also as a heat-map PNG. Needs the default target "
                   "(each image's top-1)")
    s.set_defaults(func=cmd_ablate)


# -- feature visualisation and dataset examples -------------------------------------------------------


def _node_branch(text: str, cm, *, need_branch: bool = False) -> tuple[str, int | None]:
    """NODE[/BRANCH] (BRANCH 1-based, as in Details) checked against the capture model's nodes."""
    node, _, branch = text.partition("/")
    if node not in cm.node_names:
        blocks = list(cm.block_branches)
        raise CommandError(f"{text}: no block or node {node!r}" + (f"; blocks: {', '.join(blocks)}" if blocks else ""))
    count = cm.block_branches.get(node, 0)
    if not branch:
        if need_branch:
            raise CommandError(f"{text}: give a branch, {node}/1 to {node}/{count}" if count
                               else f"{text}: {node} is not a block with branches")
        return node, None
    index = _branch_index(branch, count)
    if index is None:
        raise CommandError(f"{text}: {node} has {count} branch(es); give a number from 1 to {count}"
                           if count else f"{text}: {node} is not a block with branches")
    return node, index


def _capture_for(ref: str, weights: str | None):
    """(LoadedModel, Classifier, CaptureModel, weights hash) on the CPU for a resolved reference."""
    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.microscope.featurevis import weights_digest
    from explorer.core.classify.inference import Classifier

    loaded, graph = _load_model(ref, weights)
    if loaded.weights.is_random:
        print(f"inception-explorer: warning: {loaded.weights.describe()}", file=sys.stderr)
    clf = Classifier(loaded, "cpu", optimize=False, graph=graph or build_block_graph(loaded.spec))
    try:
        cm = clf.capture_model("cpu")
    except RuntimeError as e:
        raise CommandError(f"{ref}: cannot probe its layers: {e}", EXIT_FAILED) from None
    return loaded, clf, cm, weights_digest(loaded.module)


def cmd_visualize(args) -> int:
    """One optimised PNG per channel (cached per model, weights and request); each path printed as written."""
    from pathlib import Path

    from explorer.core.microscope import featurevis as fv

    if not 1 <= args.steps <= 10000:
        raise CommandError(f"--steps {args.steps} must be from 1 to 10000")
    if not 16 <= args.size <= 1024:
        raise CommandError(f"--size {args.size} must be from 16 to 1024")
    if not 1 <= args.batch <= 256:
        raise CommandError(f"--batch {args.batch} must be from 1 to 256")
    try:
        fv.parse_channels(args.channels)
    except ValueError as e:
        raise CommandError(f"--channels: {e}") from None
    out_dir = _output_folder(args.output)
    ref = _model_ref(args.model)
    loaded, clf, cm, digest = _capture_for(ref, args.weights)
    node, branch = _node_branch(args.target, cm)
    target = fv.Target(node, branch, args.objective)
    try:
        count = fv.target_channels(cm, target, args.size)
    except RuntimeError as e:
        raise CommandError(f"--size {args.size} is too small for {args.target}: {str(e).splitlines()[0]}",
                           EXIT_FAILED) from None
    try:
        channels = fv.parse_channels(args.channels, count)
    except ValueError as e:
        raise CommandError(f"--channels: {e}") from None
    if fv.is_batch_normalised(loaded.module):
        print(f"inception-explorer: note: {fv.BN_NOTE}", file=sys.stderr)
    import io

    from PIL import Image

    from explorer.core.outputs import Inputs, OutputError, fit_stem, make_folder, write_file

    try:
        make_folder(out_dir)
    except OutputError as e:
        raise CommandError(str(e), EXIT_FAILED) from None
    inputs = Inputs([args.model, *([args.weights] if args.weights else [])])
    noted: list[str] = []

    def note(text: str) -> None:  # the cache's first problem, once per run (not once per batch)
        if not noted:
            noted.append(text)
            print(f"inception-explorer: note: {text}", file=sys.stderr, flush=True)

    tf = clf.transforms
    unwritten = 0
    for i in range(0, len(channels), args.batch):  # one batch at a time: a killed run keeps what it wrote
        for v in fv.visualize_cached(cm, ref, digest, target, channels[i : i + args.batch], steps=args.steps,
                                     size=args.size, mean=tuple(tf.mean), std=tuple(tf.std), batch=args.batch,
                                     note=note):
            path = out_dir / f"{fit_stem(target.file_stem(v.channel), len(b'.png'))}.png"
            png = io.BytesIO()
            Image.fromarray(v.image).save(png, format="PNG")
            try:  # the file appears with its line, or neither does
                write_file(path, png.getvalue(), inputs=inputs,
                           report=lambda: print(f"{path}\t{v.objective:.4g}", flush=True))
            except OutputError as e:  # one line; the other channels are still written
                unwritten += 1
                print(f"inception-explorer: {e}", file=sys.stderr, flush=True)
            if args.objective == "channel" and v.objective <= 0:
                print(f"inception-explorer: note: channel {v.channel} never fired (its mean activation ended at"
                      f" {v.objective:.3g} after {args.steps} steps): a dead channel, or one that needs more --steps;"
                      " its picture is noise", file=sys.stderr, flush=True)
    return EXIT_FAILED if unwritten else 0


def _example_index(db: str | None, create: bool = True):
    """The ExampleIndex at --db (default: the cache's); one that cannot be used is one line, exit 1, and
    waiting for one another run holds is one line on stderr."""
    from explorer.core.microscope.examples import ExampleIndex, ExampleIndexError

    def waiting(message):
        print(f"inception-explorer: {message}", file=sys.stderr, flush=True)

    try:
        return ExampleIndex(db, create=create, on_wait=waiting)
    except ExampleIndexError as e:
        hint = "; run `inception-explorer index FOLDER` first" if e.kind == "missing" else ""
        raise CommandError(f"{e}{hint}", EXIT_FAILED) from None


def cmd_index(args) -> int:
    """Index a folder's images for dataset examples; one stderr line per file that cannot be read."""
    from pathlib import Path

    from explorer.core.microscope.examples import ExampleIndexError, index_folder

    folder = Path(args.folder)
    if not folder.is_dir():
        raise CommandError(f"{folder}: not a folder")
    if not 1 <= args.batch <= 1024:
        raise CommandError(f"--batch {args.batch} must be from 1 to 1024")
    ref = _model_ref(args.model)

    def note(path, reason):
        print(f"inception-explorer: cannot index {path}: {reason}", file=sys.stderr, flush=True)

    with _example_index(args.db) as index:  # a bad --db is refused before the model loads
        _, clf, cm, digest = _capture_for(ref, args.weights)
        try:
            r = index_folder(folder, cm, clf.graph, clf.preprocess, model=ref, weights=digest, index=index,
                             batch_size=args.batch, note=note)
        except ExampleIndexError as e:
            raise CommandError(str(e), EXIT_FAILED) from None
        print(f"{r.indexed} indexed, {r.skipped} already indexed, {len(r.failed)} unreadable; index {index.path}")
    if r.indexed + r.skipped == 0:
        print(f"inception-explorer: error: no image in {folder} could be indexed", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_examples(args) -> int:
    """A channel's top images from the index, with the receptive-field box of each maximum."""
    from explorer.core.microscope.examples import ExampleIndexError

    if args.channel < 0:
        raise CommandError(f"channel {args.channel} must be from 0")
    if args.output:
        _output_folder(args.output)
    ref = _model_ref(args.model)
    with _example_index(args.db, create=False) as index:  # a bad --db is refused before the model loads
        _, clf, cm, digest = _capture_for(ref, args.weights)
        node, branch = _node_branch(args.target, cm, need_branch=True)
        try:
            found = index.examples(ref, digest, node, branch, args.channel)
            known = index.indexed_targets(ref, digest) if not found else None
        except ExampleIndexError as e:
            raise CommandError(str(e), EXIT_FAILED) from None
        if not found:
            why = ("no folder is indexed for this model and weights: run `inception-explorer index FOLDER --model "
                   f"{args.model}` first") if not known else f"{args.target} has no channel {args.channel} in the index"
            raise CommandError(why, EXIT_FAILED)
    from explorer.core.microscope.featurevis import Target
    from explorer.core.outputs import Inputs, OutputError, fit_stem, make_folder

    out_dir = _output_folder(args.output) if args.output else None
    if out_dir is not None:
        try:
            make_folder(out_dir)
        except OutputError as err:
            raise CommandError(str(err), EXIT_FAILED) from None
    inputs = Inputs([*(e.path for e in found), args.model, *([args.weights] if args.weights else [])])
    stem = fit_stem(Target(node, branch).file_stem(args.channel), len(f"-ex{max(e.rank for e in found) + 1}.png"))
    unwritten = _write_examples(args, found, clf, out_dir, inputs, stem)
    return EXIT_FAILED if unwritten else 0


def _write_examples(args, found, clf, out_dir, inputs, stem: str) -> int:
    """Each example's line (a table row, or its record: JSON Lines or one JSON array) and, with -o, its crop,
    which appears with its line or not at all; how many crops could not be written."""
    import io

    from PIL import Image

    from explorer.core.classify.images import ImageLoadError
    from explorer.core.microscope.examples import example_crop
    from explorer.core.outputs import OutputError, write_file
    from explorer.core.records import record_writer

    writer = record_writer(args.format, sys.stdout) if args.format != "table" else None
    unwritten = 0
    try:
        for e in found:
            record = {"rank": e.rank + 1, "path": e.path, "value": round(e.value, 6), "y": e.y, "x": e.x,
                      "box": {"top": e.box[0], "left": e.box[1], "bottom": e.box[2], "right": e.box[3]}}

            def emit(record=record, e=e) -> None:
                if writer is not None:
                    writer.write(record)
                else:
                    t, l, b, r = e.box
                    print(f"{e.rank + 1}  {e.value:9.4f}  y{e.y:<3d} x{e.x:<3d}  box {t}:{b}, {l}:{r}  {e.path}",
                          flush=True)

            crop = None
            if out_dir is not None:
                try:
                    crop = example_crop(e, clf.preprocess, clf.transforms.mean, clf.transforms.std)
                except ImageLoadError as err:
                    print(f"inception-explorer: cannot crop {e.path}: {err.reason}", file=sys.stderr)
            if crop is None:
                emit()
                continue
            png, data = out_dir / f"{stem}-ex{e.rank + 1}.png", io.BytesIO()
            Image.fromarray(crop).save(data, format="PNG")
            record["crop"] = str(png)
            try:  # the crop appears with its line, or neither does
                write_file(png, data.getvalue(), inputs=inputs, report=emit)
            except OutputError as err:  # one line; the other examples are still written
                unwritten += 1
                del record["crop"]
                print(f"inception-explorer: {err}", file=sys.stderr, flush=True)
                emit()
    finally:
        if writer is not None:
            writer.close()
    return unwritten


def _add_featurevis_parsers(sub) -> None:
    weights_help = "a .pth/.pt/.safetensors file, or 'none' for random weights (default: the published weights)"
    s = sub.add_parser("visualize", help="feature visualisation: an image optimised for each channel of a layer")
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("target", metavar="NODE[/BRANCH]", help="a block or node; /BRANCH: one of its branches "
                   "(1-based, as in Details)")
    s.add_argument("--channels", default="0-15", help="channels: 0-15, 3, 0,4,8-11 (default 0-15)")
    s.add_argument("--steps", type=int, default=256, help="optimisation steps (default 256)")
    s.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    s.add_argument("--objective", choices=("channel", "neuron", "negative"), default="channel",
                   help="channel: the mean activation; neuron: the centre unit; negative: minus the mean")
    s.add_argument("--batch", type=int, default=16, help="channels optimised together (default 16)")
    s.add_argument("--weights", help=weights_help)
    s.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for the PNGs, one per channel, e.g. inception4a-2-ch003.png")
    s.set_defaults(func=cmd_visualize)
    s = sub.add_parser("index", help="index a folder of images for dataset examples (top-9 per branch channel)")
    s.add_argument("folder", metavar="FOLDER")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--weights", help=weights_help)
    s.add_argument("--batch", type=int, default=16, help="images per forward (default 16)")
    s.add_argument("--db", help="the SQLite index (default: examples.sqlite in the cache folder)")
    s.set_defaults(func=cmd_index)
    s = sub.add_parser("examples", help="a channel's top images from the index, with receptive-field boxes")
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("target", metavar="NODE/BRANCH", help="a block and one of its branches (1-based)")
    s.add_argument("channel", type=int, help="a channel of that branch, from 0")
    s.add_argument("--weights", help=weights_help)
    s.add_argument("--format", choices=("table", "jsonl", "json"), default="table",
                   help="jsonl: one JSON object per example a line; json: one JSON array")
    s.add_argument("--db", help="the SQLite index (default: examples.sqlite in the cache folder)")
    s.add_argument("-o", "--output", metavar="DIR", help="write each example's receptive-field crop here")
    s.set_defaults(func=cmd_examples)


def _add_train_demo_parser(sub) -> None:
    from explorer.core.demo.training import TrainingPlan

    plan = TrainingPlan()  # the shipped weights' settings
    s = sub.add_parser("train-demo", help="train the demo model (shapes_inception) on drawn shapes: seeded, "
                       "deterministic on the CPU; writes its weights and the accuracy measured on fresh images")
    s.add_argument("-o", "--output", default="shapes_inception.safetensors", metavar="FILE.safetensors",
                   help="where the weights are written (whole or not at all; default: shapes_inception.safetensors)")
    s.add_argument("--steps", type=int, default=plan.steps,
                   help="training steps, each on a fresh batch of drawn images (default %(default)s)")
    s.add_argument("--batch", type=int, default=plan.batch, help="images per step (default %(default)s)")
    s.add_argument("--seed", type=int, default=plan.seed,
                   help="seed of the initialisation and of the training images (default %(default)s)")
    s.add_argument("--threads", type=int, default=plan.threads, help="CPU threads; the same seed, steps, batch and "
                   "thread count give the same weights (default %(default)s)")
    s.add_argument("--eval-images", dest="eval_images", type=int, default=plan.eval_images, metavar="N",
                   help="fresh images, of a seed training never uses, the accuracy is measured on (default "
                   "%(default)s; 0: none)")
    s.add_argument("--background-blur", dest="background_blur", type=float, default=plan.background_blur,
                   metavar="SHARE", help="share of the images whose background is partly blurred, so that the "
                   "faithfulness curves' blurred image is one the network knows (default %(default)s; 0: none)")
    s.add_argument("--object-blur", dest="object_blur", type=float, default=plan.object_blur, metavar="SHARE",
                   help="share of the images whose shape is blurred away, taught as no evidence (default "
                   "%(default)s; 0: none)")
    s.set_defaults(func=cmd_train_demo)


def cmd_train_demo(args) -> int:
    """Train the demo model, progress on stderr; the weights file is written whole once training is done, and
    its line (the file, the accuracy measured) printed with it."""
    from pathlib import Path

    from explorer.core.demo.training import EVAL_SEED, TrainingPlan

    plan = TrainingPlan(steps=args.steps, batch=args.batch, seed=args.seed, threads=args.threads,
                        eval_images=args.eval_images, background_blur=args.background_blur,
                        object_blur=args.object_blur)
    try:
        plan.check()
    except ValueError as e:
        raise CommandError(str(e)) from None
    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise CommandError(f"--output {args.output}: the weights are written as safetensors; name the file"
                           " .safetensors")
    if out.is_dir() or not out.parent.resolve().is_dir():  # found now, not after minutes of training
        raise CommandError(f"cannot write {out}: " + ("is a folder" if out.is_dir() else "no such folder"), EXIT_FAILED)

    from explorer.core.demo.training import train, weights_bytes
    from explorer.core.outputs import OutputError, write_file
    from explorer.core.text import fmt_fraction

    print(f"inception-explorer: training shapes_inception: {plan.steps} steps of {plan.batch} drawn images, seed "
          f"{plan.seed}, {plan.threads} thread{'s' if plan.threads > 1 else ''}", file=sys.stderr, flush=True)

    def progress(p) -> None:
        print(f"step {p.step}/{p.steps}  loss {p.loss:.4f}  {p.seconds:.0f} s", file=sys.stderr, flush=True)

    result = train(plan, on_step=progress, report_every=max(1, min(50, plan.steps // 20)))
    measured = ("accuracy not measured" if result.accuracy is None else
                f"accuracy {fmt_fraction(result.accuracy)} on {plan.eval_images} fresh images (seed {EVAL_SEED})")
    try:
        write_file(out, weights_bytes(result), report=lambda: print(f"{out}\t{measured}", flush=True))
    except OutputError as e:
        raise CommandError(str(e), EXIT_FAILED) from None
    print(f"inception-explorer: trained in {result.seconds:.0f} s", file=sys.stderr)
    return 0


def _add_draw_shapes_parser(sub) -> None:
    s = sub.add_parser("draw-shapes", help="draw images of the demo task (shapes on noisy gradients) with the masks of "
                       "their shapes, to try the demo model: attribute FOLDER/images --masks FOLDER/masks")
    s.add_argument("output", metavar="FOLDER", help="images go to FOLDER/images, their masks to FOLDER/masks, each "
                   "NNNN-CLASS.png")
    s.add_argument("--count", type=int, default=12, help="images, the six classes in turn (default %(default)s)")
    s.add_argument("--seed", type=int, default=1, help="the same seed draws the same images (default %(default)s; the "
                   "shipped weights were trained on seed 0 and measured on 24000000)")
    s.set_defaults(func=cmd_draw_shapes)


def cmd_draw_shapes(args) -> int:
    """Draw `--count` images with their masks into FOLDER/images and FOLDER/masks; a line per image (image, mask,
    class) once both files are in place."""
    import io

    from PIL import Image

    from explorer.core.demo.drawing import draw_images
    from explorer.core.outputs import OutputError, make_folder, write_files

    if not 1 <= args.count <= 100_000:
        raise CommandError(f"--count {args.count} must be from 1 to 100000")
    if not 0 <= args.seed < 2 ** 63:
        raise CommandError("--seed must be from 0 to 2⁶³ − 1")
    out = _output_folder(args.output)
    try:
        folders = make_folder(out / "images"), make_folder(out / "masks")
    except OutputError as e:
        raise CommandError(str(e), EXIT_FAILED) from None

    def png(array) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    for i in range(args.count):  # one at a time: a killed run keeps what it finished
        (d,) = draw_images(1, args.seed, start=i)
        image, mask = (f / f"{i:04d}-{d.class_name}.png" for f in folders)
        try:
            write_files({image: png(d.image), mask: png(d.mask.astype("uint8") * 255)},
                        report=lambda: print(f"{image}\t{mask}\t{d.class_name}", flush=True))
        except OutputError as e:
            raise CommandError(str(e), EXIT_FAILED) from None
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command. Whatever happens, the end is one line at most: a CommandError's message, stdout that
    cannot be written (a full device: exit 1), Ctrl-C ("interrupted", exit 130; the files a command
    writes are whole or absent); a reader that stopped (a closed pipe) ends quietly with 0."""
    from explorer.core.runtime import prepare_torch_runtime

    prepare_torch_runtime()  # before any command imports torch: OpenMP reads it when torch loads
    stdout = sys.stdout
    sys.stdout = _GuardedStdout(stdout)
    try:
        parser = build_parser()
        argv = sys.argv[1:] if argv is None else list(argv)
        # `gui` hands every option to the window's own parser (argparse would claim --help here).
        args = parser.parse_args(argv) if argv[:1] != ["gui"] else argparse.Namespace(
            command="gui", func=cmd_gui, options=argv[1:])
        if args.command is None:
            parser.print_help()
            code = 0
        else:
            code = args.func(args)
        sys.stdout.flush()  # a full device is found here, not by Python's own flush at exit
        return code
    except CommandError as e:
        print(f"inception-explorer: error: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        _silence(stdout)
        return 0
    except _StdoutFailed as e:
        from explorer.core.outputs import reason

        print(f"inception-explorer: error: cannot write to stdout: {reason(e.error)}", file=sys.stderr)
        _silence(stdout)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("inception-explorer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if isinstance(sys.stdout, _GuardedStdout):
            sys.stdout = stdout


class _StdoutFailed(Exception):
    """stdout could not be written (a full device, an I/O error): told apart from the command's own files."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class _GuardedStdout:
    """sys.stdout while a command runs: an OSError writing it becomes _StdoutFailed (a BrokenPipeError
    stays itself: the reader stopped, which is not a failure)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _StdoutFailed(e) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _StdoutFailed(e) from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _silence(stream) -> None:
    """Point `stream`'s file descriptor at /dev/null: the text still buffered for a full device or a closed
    pipe then goes nowhere, instead of Python's flush at exit printing "Exception ignored …"."""
    import os

    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (an in-memory capture)
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
