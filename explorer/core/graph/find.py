"""Find a node of a block graph by (part of) its name, or a layer inside one of its blocks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FindMatch:
    """A node whose name matches, or (`layer` set) a layer of block `node` whose name matches."""

    node: str
    layer: str | None = None


def find_in_graph(graph, text: str) -> FindMatch | None:
    """The best match for `text` (case-insensitive): a node named exactly so, then one whose name starts
    with it, then one whose name contains it, then the first block holding a layer whose name contains it."""
    text = text.strip().lower()
    if not text or graph is None:
        return None
    names = [n.name for n in graph.nodes()]
    for test in (lambda n: n == text, lambda n: n.startswith(text), lambda n: text in n):
        match = next((n for n in names if test(n.lower())), None)
        if match is not None:
            return FindMatch(match)
    for node in graph.blocks():
        for branch in node.branches:
            layer = next((l.name for l in branch.all_layers() if text in l.name.lower()), None)
            if layer is not None:
                return FindMatch(node.name, layer)
    return None
