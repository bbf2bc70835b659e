"""Layout speed: a synthetic Inception-ResNet-v2-sized block graph (~1,000 layers), all blocks open,
then the real Inception-ResNet-v2 of the zoo beside it.

Prints the time to build the diagram and to lay it out (pure Python, no display needed), and with
--scene the time to turn it into Qt graphics items too. Target: layout of ~1,000 layers ≤ 300 ms.

The real network (about 1,200 module calls per forward) adds what the synthetic graph skips: building
its block graph (beside the anchor of that step, torch.fx's symbolic trace of the same model, which
the block graph starts from), layout with every block collapsed and every block expanded (beside
the synthetic graph's build + layout, ratio printed; budget ≤ 300 ms) and a retrace at a new input
size after the first (as bench_trace.py measures it; budget ≤ 5 ms).

    .venv/bin/python bench/bench_layout.py [--blocks 100] [--scene] [--no-real] [--quick]

--quick (a smoke test): 10 blocks, one repeat, GoogLeNet as the real network.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

from explorer.core.graph.blockgraph import BlockNode, BranchSpec, LayerSpec
from explorer.diagram.layout import Style, build_diagram_from, layout_diagram


def conv(name: str, k: tuple[int, int], c: int) -> LayerSpec:
    return LayerSpec(name, "conv", k, (1, 1), (k[0] // 2, k[1] // 2), c)


def synthetic_graph(blocks: int = 100):
    """A stem, `blocks` Inception blocks of 10 layers each (one with a nested split), aux heads, a head."""
    nodes, shapes = [], {}

    def add(node: BlockNode, shape):
        nodes.append(node)
        shapes[node.name] = SimpleNamespace(output_shape=shape)

    add(BlockNode("input", "input", "stem", "input", out_channels=3), (3, 299, 299))
    for i in range(4):
        add(BlockNode(f"stem{i}", "conv", "stem", "Conv2d", layers=(conv(f"stem{i}.conv", (3, 3), 64),)), (64, 147, 147))
    for b in range(blocks):
        n = f"block{b}"
        branches = (
            BranchSpec("#1×1", 96, (conv(f"{n}.b0", (1, 1), 96),), kernel=(1, 1)),
            BranchSpec("#1×1 reduce → 1×7 → 7×1", 160, (conv(f"{n}.b1a", (1, 1), 128), conv(f"{n}.b1b", (1, 7), 160),
                                                        conv(f"{n}.b1c", (7, 1), 160))),
            BranchSpec("#1×1 reduce → (1×3 ‖ 3×1)", 256, (conv(f"{n}.b2a", (1, 1), 192),),
                       parallel=(BranchSpec("1×3", 128, (conv(f"{n}.b2b", (1, 3), 128),)),
                                 BranchSpec("3×1", 128, (conv(f"{n}.b2c", (3, 1), 128),))), merge="cat"),
            BranchSpec("3×3 avg pool → pool proj", 96, (LayerSpec(f"{n}.pool", "avg_pool", (3, 3), (1, 1), (1, 1), 512),
                                                       conv(f"{n}.b3", (1, 1), 96))),
        )
        add(BlockNode(n, "inception", "body", "InceptionBlock", branches=branches, merge="cat", out_channels=608),
            (608, 17, 17))
        if b % 25 == 24:
            add(BlockNode(f"aux{b}", "aux", "body", "InceptionAux", training_only=True,
                          layers=(LayerSpec(f"aux{b}.fc", "linear", None, None, None, 1000),)), (1000,))
    add(BlockNode("avgpool", "pool", "head", "AdaptiveAvgPool2d",
                  layers=(LayerSpec("avgpool", "adaptive_avg_pool", None, None, None, 608),)), (608, 1, 1))
    add(BlockNode("fc", "linear", "head", "Linear", layers=(LayerSpec("fc", "linear", None, None, None, 1000),)), (1000,))
    names = [n.name for n in nodes]
    preds = {n: [] for n in names}
    succs = {n: [] for n in names}
    main = [n.name for n in nodes if not n.training_only]
    for a, b in zip(main, main[1:]):
        succs[a].append(b)
        preds[b].append(a)
    for i, n in enumerate(nodes):
        if n.training_only:
            p = nodes[i - 1].name
            succs[p].append(n.name)
            preds[n.name].append(p)
    trace = SimpleNamespace(nodes=shapes)
    layers = sum(len(n.layers) + sum(len(b.all_layers()) for b in n.branches) for n in nodes)
    return nodes, preds, succs, trace, layers


def char_measure(text: str, bold: bool) -> tuple[float, float]:
    return len(text) * (7.5 if bold else 7.0), 15.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=110)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--scene", action="store_true", help="also time building the Qt scene (offscreen)")
    ap.add_argument("--no-real", action="store_true", help="skip the real Inception-ResNet-v2")
    ap.add_argument("--quick", action="store_true", help="smoke test: 10 blocks, one repeat, GoogLeNet as the real one")
    args = ap.parse_args()
    if args.quick:
        args.blocks, args.repeat = 10, 1
    nodes, preds, succs, trace, layers = synthetic_graph(args.blocks)
    expanded = [n.name for n in nodes if n.branches]
    measure = char_measure
    theme = None
    if args.scene:
        import os

        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtWidgets import QApplication

        from explorer.qt.graph.graph_view import GraphView, TextMeasure
        from explorer.qt.theme import make_theme

        app = QApplication.instance() or QApplication([])  # noqa: F841 - keeps Qt alive
        theme = make_theme()
        measure = TextMeasure(theme)
        view = GraphView()
    build_t, layout_t, scene_t = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        d = build_diagram_from(nodes, preds, succs, trace, expanded, measure, Style())
        t1 = time.perf_counter()
        layout_diagram(d, Style())
        t2 = time.perf_counter()
        build_t.append(t1 - t0)
        layout_t.append(t2 - t1)
        if theme is not None:
            view.set_diagram(d, theme)
            scene_t.append(time.perf_counter() - t2)
    print(f"synthetic graph: {len(nodes)} nodes, {layers} layers, {len(d.boxes)} boxes, {len(d.edges)} edges")
    print(f"build_diagram_ms {1000 * statistics.median(build_t):.1f}")
    print(f"layout_ms {1000 * statistics.median(layout_t):.1f}")
    total = [a + b for a, b in zip(build_t, layout_t)]
    print(f"build_plus_layout_ms {1000 * statistics.median(total):.1f}  (target ≤ 300)")
    if scene_t:
        print(f"qt_scene_ms {1000 * statistics.median(scene_t):.1f}")
    if not args.no_real:
        real_model(statistics.median(total), args.repeat, measure, theme, view if theme is not None else None,
                   name="googlenet" if args.quick else "inception_resnet_v2")


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def real_model(synthetic_s: float, repeat: int, measure, theme, view, name: str = "inception_resnet_v2") -> None:
    """The zoo's Inception-ResNet-v2: graph building, layout collapsed and expanded, retrace."""
    import torch
    from torch import fx

    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.shapes.trace import trace_shapes
    from explorer.core.model.zoo import get_spec
    from explorer.diagram.layout import build_diagram

    spec = get_spec(name)
    model = spec.build(device="meta")
    calls = [0]
    hooks = [m.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1)) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 3, *spec.native_size, device="meta"))
    for h in hooks:
        h.remove()
    fx_ms = median_ms(lambda: fx.symbolic_trace(spec.build(device="meta")), 3)
    graphs = []
    build_ms = median_ms(lambda: graphs.append(build_block_graph(spec)), 3)
    graph = graphs[-1]
    first = time.perf_counter()
    trace = trace_shapes(graph, spec.native_size)
    first_ms = 1000 * (time.perf_counter() - first)
    layers = sum(len(n.layers) + sum(len(b.all_layers()) for b in n.branches) for n in graph.nodes())
    print(f"\n{name}: {calls[0]} module calls per forward, {len(graph.nodes())} nodes, {len(graph.blocks())} blocks,"
          f" {layers} layers")
    print(f"{'':34s} {'ours ms':>9s} {'anchor ms':>10s} {'ratio':>7s}  anchor; budget")
    print(f"{'build_block_graph':34s} {build_ms:9.1f} {fx_ms:10.1f} {build_ms / fx_ms:6.2f}×  torch.fx.symbolic_trace"
          " of the same model (meta)")
    everything = {n.name for n in graph.blocks()}
    for label, expanded in (("collapsed", set()), ("expanded", everything)):
        diagrams = []

        def lay(expanded=expanded):
            d = build_diagram(graph, trace, expanded, measure, Style())
            layout_diagram(d, Style())
            diagrams.append(d)

        ms = median_ms(lay, repeat)
        d = diagrams[-1]
        print(f"{'layout ' + label + f' ({len(d.boxes)} boxes)':34s} {ms:9.1f} {1000 * synthetic_s:10.1f}"
              f" {ms / (1000 * synthetic_s):6.2f}×  synthetic graph build+layout; ≤ 300 ms")
        if view is not None:
            kinds = {n.name: n.kind for n in graph.nodes()}
            scene_ms = median_ms(lambda d=d: view.set_diagram(d, theme, kinds), repeat)
            print(f"{'qt scene ' + label:34s} {scene_ms:9.1f}")
    sizes = (75, 224, 299, 777, 2048, 4096, (4096, 96))
    worst = max(median_ms(lambda s=s: trace_shapes(graph, s), 50) for s in sizes)
    print(f"{'retrace, slowest size (first ' + f'{first_ms:.0f} ms)':34s} {worst:9.3f} {5.0:10.1f}"
          f" {worst / 5.0:6.2f}×  the ≤ 5 ms budget (bench_trace.py: vs torchinfo)")


if __name__ == "__main__":
    main()
