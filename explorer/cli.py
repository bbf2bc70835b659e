"""The command line over the engine: `inception-explorer models | trace | …`.

No Qt is imported on this path, and torch only once the arguments are known to be valid, so a
mistyped command answers at once with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import math
import sys

EXIT_USAGE = 2
EXIT_FAILED = 1


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
    from explorer.core.anycnn import OpenModelError, resolve_reference

    try:
        return resolve_reference(text)
    except OpenModelError as e:
        raise CommandError(str(e)) from None


def _open_model(ref: str):
    """(ModelSpec, BlockGraph) of a reference; a name or file that cannot be opened is one line, exit 2."""
    from explorer.core.anycnn import OpenModelError
    from explorer.core.graphs import opened_model, zoo_block_graph
    from explorer.core.program import LayerFailed
    from explorer.core.zoo import get_spec, model_names

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
    return "none published"


def cmd_models(args) -> int:
    """The zoo with its weights; with --all, every name that can be opened (torchvision, timm)."""
    from explorer.core.zoo import all_specs

    specs = all_specs()
    wn = max(len(s.name) for s in specs)
    wt = max(len(s.title) for s in specs)
    for spec in specs:
        h, w = spec.native_size
        print(f"{spec.name:{wn}s}  {spec.title:{wt}s}  input {h}×{w}  weights: {_weights_column(spec)}")
    if args.all:
        from explorer.core.anycnn import timm_model_names, torchvision_model_names

        for name in torchvision_model_names() + timm_model_names():
            print(name)
    return 0


def cmd_trace(args) -> int:
    from explorer.core.shapes import check_batch, parse_size

    ref = _model_ref(args.model)
    try:
        size = parse_size(args.size)
        check_batch(args.batch)
    except ValueError as e:
        raise CommandError(str(e)) from None

    from explorer.core.export import TRACE_FORMATS
    from explorer.core.shapes import InputTooSmallError, trace_shapes

    _, graph = _open_model(ref)
    try:
        trace = trace_shapes(graph, size, batch=args.batch)
    except InputTooSmallError as e:
        raise CommandError(str(e), EXIT_FAILED) from None
    sys.stdout.write(TRACE_FORMATS[args.format](graph, trace))
    if args.format == "json":
        sys.stdout.write("\n")
    return 0


def cmd_classify(args) -> int:
    """Classify image files and folders; one stderr line per file that cannot be classified."""
    ref = _model_ref(args.model)
    if args.top < 1:
        raise CommandError(f"--top {args.top} must be at least 1")
    from explorer.core.shapes import MAX_BATCH

    if args.batch is not None and not 1 <= args.batch <= MAX_BATCH:
        raise CommandError(f"--batch {args.batch} must be from 1 to {MAX_BATCH}")
    from explorer.core.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_LIMIT, expand_inputs

    # (NaN fails both comparisons: "not 0 < x <= limit" refuses it, and inf.)
    if args.max_pixels is not None and not 0 < args.max_pixels <= MAX_PIXELS_LIMIT / 1e6:
        raise CommandError(
            f"--max-megapixels {args.max_pixels:g} must be above 0 and at most {MAX_PIXELS_LIMIT / 1e6:g}"
        )

    files = expand_inputs(args.inputs)
    if not files:
        raise CommandError("no image files found in " + ", ".join(args.inputs), EXIT_FAILED)

    from explorer.core.inference import Classifier, DeviceUnavailableError, resolve_device
    from explorer.core.loading import load_model
    from explorer.core.weights import WeightsError

    try:
        resolve_device(args.device)
    except DeviceUnavailableError as e:
        raise CommandError(f"--device {args.device}: {e}", EXIT_FAILED) from None
    from explorer.core.zoo import get_spec, model_names

    if ref in model_names():
        spec, outputs = get_spec(ref), None
    else:
        spec, graph = _open_model(ref)
        outputs = _output_classes(graph)
    try:
        loaded = load_model(spec, weights=args.weights or "auto", outputs=outputs)
    except WeightsError as e:
        raise CommandError(str(e), EXIT_FAILED) from None
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

    import time

    start = time.perf_counter()
    ok = failed = 0
    out = sys.stdout
    if args.format == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", "rank", "index", "label", "prob"])
    elif args.format == "json":
        import json
    # Each result is written and flushed as soon as it is known: a batch killed half-way keeps
    # every line it finished (JSON Lines: one complete document per line).
    for batch in clf.iter_classify(files, top=args.top):
        for r in batch:
            if not r.ok:
                failed += 1
                print(f"inception-explorer: cannot classify {r.source}: {r.error}", file=sys.stderr)
                continue
            ok += 1
            if r.notice:
                print(f"inception-explorer: note: {r.notice}", file=sys.stderr)
            if args.format == "json":
                out.write(json.dumps(r.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
            elif args.format == "csv":
                for rank, p in enumerate(r.top, 1):
                    prob = f"{p.prob:.6f}" if math.isfinite(p.prob) else ""  # NaN logits: an empty cell
                    writer.writerow([r.source, rank, p.index, p.label, prob])
            else:
                t = r.timings_ms
                print(
                    f"{r.source}  ({r.image_size[0]}×{r.image_size[1]}; decode {t['decode']:.1f} ms, "
                    f"preprocess {t['preprocess']:.1f} ms, forward {t['forward']:.1f} ms)"
                )
                for rank, p in enumerate(r.top, 1):
                    print(f"  {rank}. {p.prob:7.2%}  {p.label} ({p.index})")
            out.flush()
    elapsed = time.perf_counter() - start
    if args.format == "table" and ok:
        print(f"{ok} image(s) in {elapsed:.2f} s ({ok / elapsed:.1f} images/s) on {clf.device}, {failed} failed")
    if ok == 0:
        print(f"inception-explorer: error: none of the {failed} input(s) could be classified", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _output_classes(graph) -> int | None:
    """How many class scores the model outputs at its native size (None: not a vector), as the window
    works it out: 1000 gives ImageNet's names, another count class indices."""
    from explorer.core.shapes import trace_shapes

    last = [n for n in graph.nodes() if not n.training_only][-1]
    try:
        shape = trace_shapes(graph, graph.native_size).nodes[last.name].output_shape
    except Exception:  # a model that cannot be traced still classifies; its classes are then unnamed
        return None
    return shape[0] if shape is not None and len(shape) == 1 else None


MODEL_HELP = ("a zoo name (see `models`), torchvision:NAME, timm:NAME, a bare torchvision or timm name, a .py file"
              " with build(), or a TorchScript / torch.export file")


def build_parser() -> argparse.ArgumentParser:
    from explorer.core.images import MAX_PIXELS_LIMIT
    from explorer.core.shapes import MAX_BATCH, MAX_INPUT_SIDE

    p = _Parser(prog="inception-explorer", description="Look inside Inception-family networks.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    s = sub.add_parser("models", help="list the model zoo and its weights")
    s.add_argument("--all", action="store_true", help="also every torchvision and timm model that opens by name")
    s.set_defaults(func=cmd_models)
    s = sub.add_parser("trace", help="trace every node's output shape, params and multiply-adds")
    s.add_argument("model", help=MODEL_HELP)
    s.add_argument("--size", default="224",
                   help=f"input size: H or HxW (default 224; at most {MAX_INPUT_SIDE} per side)")
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
    s.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="json: JSON Lines, one object per image; every format is written as results complete")
    s.set_defaults(func=cmd_classify)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except CommandError as e:
        print(f"inception-explorer: error: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
