"""`inception-explorer`: the window without arguments (or with `gui`), the command line otherwise.

Kept apart from explorer.cli so that the command line never imports Qt.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from explorer.core.runtime import prepare_torch_runtime

    prepare_torch_runtime()  # first: resolving a bare torchvision name below imports torch
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] == "gui":
        import argparse

        p = argparse.ArgumentParser(prog="inception-explorer gui", description="Open the explorer window.")
        p.add_argument("--model", default=None,
                       help="a zoo model (default: the last one, else googlenet), or any CNN: torchvision:NAME,"
                            " timm:NAME, a bare torchvision or timm name, or a .py file with build(), a TorchScript"
                            " .ts/.pt or a torch.export .pt2")
        p.add_argument("--weights", default="auto", help="auto (hub cache, then download), none, or a file")
        p.add_argument("--offline", action="store_true", help="never try to download weights")
        opts = p.parse_args(args[1:] if args else [])
        if opts.model is not None:  # a bare torchvision/timm name, as on the command line
            from explorer.core.model.anycnn import OpenModelError, resolve_reference

            try:
                opts.model = resolve_reference(opts.model)
            except OpenModelError as e:
                print(f"inception-explorer: error: {e}", file=sys.stderr)
                return 2
        from explorer.qt.platform_check import platform_problem

        problem = platform_problem()  # before any Qt library loads: Qt's own failure is an abort
        if problem:
            print(problem, file=sys.stderr)
            return 1
        from explorer.qt.app import main as gui_main

        return gui_main([sys.argv[0]], model=opts.model, weights=opts.weights, allow_download=not opts.offline)
    try:  # Ctrl-C while the command line loads: the same one line as during a command
        from explorer.cli import main as cli_main
    except KeyboardInterrupt:
        print("inception-explorer: interrupted", file=sys.stderr)
        return 130
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
