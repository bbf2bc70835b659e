"""Block-graph previews: a zoo model's graph and its shapes at the native size, as JSON.

Building a block graph needs torch and torchvision, whose import takes seconds; a preview needs
neither. The window draws the preview at once and swaps in the live graph (which retraces for
any size) when it is ready. Previews of the zoo models ship in resources/graphs; a test checks
each against a freshly built graph, and `python -m explorer.core.shapes.preview` rewrites them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import networkx as nx

from explorer.core.graph.blockgraph import BlockNode, BranchSpec, LayerSpec, NodeGraph
from explorer.core.shapes.trace import NodeShape, ShapeTrace

PREVIEW_DIR = Path(__file__).resolve().parents[3] / "resources" / "graphs"
FORMAT = 1
_NODE_FIELDS = [f.name for f in fields(BlockNode) if f.name not in ("steps", "output_step", "join_step",
                                                                       "branch_steps")]


class PreviewGraph(NodeGraph):
    """The drawing side of a BlockGraph (nodes, edges, totals), without its shape program."""

    is_preview = True

    def __init__(self, name: str, graph: nx.DiGraph, native_size, total_params: int, total_params_inference: int):
        self.name, self.graph, self.native_size = name, graph, tuple(native_size)
        self.total_params, self.total_params_inference = total_params, total_params_inference


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def _layer(d: dict) -> LayerSpec:
    return LayerSpec(**{k: _tuples(v) for k, v in d.items()})


def _branch(d: dict) -> BranchSpec:
    d = dict(d)
    d["layers"] = tuple(_layer(x) for x in d["layers"])
    d["tail"] = tuple(_layer(x) for x in d["tail"])
    d["parallel"] = tuple(_branch(x) for x in d["parallel"])
    d["pool"] = _layer(d["pool"]) if d["pool"] else None
    d["kernel"] = _tuples(d["kernel"])
    d["reads"] = tuple(d.get("reads", ()))
    return BranchSpec(**d)


def preview_json(graph, trace: ShapeTrace) -> str:
    """Serialise a block graph and one trace of it."""
    nodes = []
    for n in graph.nodes():
        d = {k: v for k, v in asdict(n).items() if k in _NODE_FIELDS}
        nodes.append(d)
    doc = {
        "format": FORMAT, "model": graph.name, "native_size": list(graph.native_size),
        "total_params": graph.total_params, "total_params_inference": graph.total_params_inference,
        "nodes": nodes, "edges": [list(e) for e in graph.graph.edges],
        "trace": {**{k: v for k, v in asdict(trace).items() if k != "nodes"},
                  "nodes": [asdict(t) for t in trace.nodes.values()]},
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def preview_from_json(text: str) -> tuple[PreviewGraph, ShapeTrace]:
    doc = json.loads(text)
    if doc.get("format") != FORMAT:
        raise ValueError("preview of another format")
    g = nx.DiGraph()
    order = []
    for d in doc["nodes"]:
        d = dict(d)
        d["layers"] = tuple(_layer(x) for x in d["layers"])
        d["branches"] = tuple(_branch(x) for x in d["branches"])
        d["notes"] = tuple(d["notes"])
        for k in ("receptive_field", "effective_stride"):
            d[k] = _tuples(d[k])
        node = BlockNode(**d)
        g.add_node(node.name, node=node)
        order.append(node.name)
    g.add_edges_from(tuple(e) for e in doc["edges"])
    g.graph["order"] = order
    g.graph["model"] = doc["model"]
    preview = PreviewGraph(doc["model"], g, doc["native_size"], doc["total_params"], doc["total_params_inference"])
    t = dict(doc["trace"])
    nodes = {}
    for d in t.pop("nodes"):
        d = {k: _tuples(v) for k, v in d.items()}
        nodes[d["name"]] = NodeShape(**d)
    t = {k: _tuples(v) for k, v in t.items()}
    return preview, ShapeTrace(nodes=nodes, **t)


def load_preview(name: str, directory: Path = PREVIEW_DIR) -> tuple[PreviewGraph, ShapeTrace] | None:
    """The shipped preview of zoo model `name`, or None (no file, or one this version cannot read)."""
    path = directory / f"{name}.json"
    try:
        return preview_from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_previews(directory: Path = PREVIEW_DIR) -> list[Path]:
    """Build every zoo model's graph and write its preview (run after changing the engine)."""
    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.shapes.trace import trace_shapes
    from explorer.core.model.zoo import all_specs

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in all_specs():
        graph = build_block_graph(spec)
        path = directory / f"{spec.name}.json"
        path.write_text(preview_json(graph, trace_shapes(graph, spec.native_size)) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_previews():
        print(p, file=sys.stderr)
