"""Block graphs per model reference, built once per process (the window, its Compare window, benchmarks).

A zoo model's graph is built on the meta device; an opened model (torchvision:/timm: name, a file) is
opened once per reference and, for a file, per modification time. Safe to call from any thread.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_zoo_cache: dict[str, Any] = {}
_opened_cache: dict[tuple, Any] = {}
_lock = threading.Lock()


def zoo_block_graph(name: str):
    """A zoo model's BlockGraph, with its minimum input size computed (cached on the graph)."""
    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.shapes.trace import min_input_size
    from explorer.core.model.zoo import get_spec

    with _lock:
        graph = _zoo_cache.get(name)
        if graph is None:
            graph = _zoo_cache[name] = build_block_graph(get_spec(name))
        min_input_size(graph)  # cached on the graph: computing it here keeps it off the UI thread
    return graph


def opened_model(ref: str):
    """(ModelSpec, BlockGraph) of any CNN reference; a file is opened again when it changed on disk."""
    from explorer.core.model.anycnn import open_block_graph

    key = (ref, os.path.getmtime(ref) if os.path.isfile(ref) else None)
    with _lock:
        opened = _opened_cache.get(key)
        if opened is None:
            opened = _opened_cache[key] = open_block_graph(ref)
    return opened


def block_graph(ref: str):
    """The BlockGraph of a zoo model or of any CNN reference (see `opened_model`)."""
    from explorer.core.model.zoo import model_names

    return zoo_block_graph(ref) if ref in model_names() else opened_model(ref)[1]
