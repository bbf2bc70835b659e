"""The command line over the engine: `inception-explorer models | trace | …`.

No Qt is imported on this path, and torch only once the arguments are known to be valid, so a
mistyped command answers at once with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
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


def _model_name(name: str) -> str:
    from explorer.core.zoo import model_names

    if name not in model_names():
        raise CommandError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    return name


def cmd_models(args) -> int:
    from explorer.core.zoo import all_specs

    for spec in all_specs():
        h, w = spec.native_size
        weights = spec.weights[2] if spec.weights else "none"
        print(f"{spec.name:16s} {spec.title:42s} input {h}×{w}  weights {weights}")
    return 0


def cmd_trace(args) -> int:
    from explorer.core.shapes import parse_size

    name = _model_name(args.model)
    try:
        size = parse_size(args.size)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if args.batch <= 0:
        raise CommandError(f"batch {args.batch} must be positive")

    from explorer.core.blockgraph import build_block_graph
    from explorer.core.export import TRACE_FORMATS
    from explorer.core.shapes import InputTooSmallError, trace_shapes
    from explorer.core.zoo import get_spec

    graph = build_block_graph(get_spec(name))
    try:
        trace = trace_shapes(graph, size, batch=args.batch)
    except InputTooSmallError as e:
        raise CommandError(str(e), EXIT_FAILED) from None
    sys.stdout.write(TRACE_FORMATS[args.format](graph, trace))
    if args.format == "json":
        sys.stdout.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="inception-explorer", description="Look inside Inception-family networks.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    s = sub.add_parser("models", help="list the model zoo")
    s.set_defaults(func=cmd_models)
    s = sub.add_parser("trace", help="trace every node's output shape, params and multiply-adds")
    s.add_argument("model")
    s.add_argument("--size", default="224", help="input size: H or HxW (default 224)")
    s.add_argument("--batch", type=int, default=1, help="batch size N (default 1)")
    s.add_argument("--format", choices=("table", "json", "csv", "markdown"), default="table")
    s.set_defaults(func=cmd_trace)
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
