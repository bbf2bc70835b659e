"""Details: what the selected node does at the current input size — its kind, shapes, parameters, multiply-adds,
memory and receptive field — and for a block a table of its branches; a layer inside an opened block is named in
words with its own parameters and output shape."""

from __future__ import annotations

import html

from PySide6.QtWidgets import QTextBrowser

from explorer.core.shapes.layers import selected_layer
from explorer.core.text import MISSING, MULTIPLY_ADDS, fmt_bytes, fmt_count, fmt_int, fmt_kernel, fmt_shape


class DetailsPanel(QTextBrowser):
    """What the selected node does at the current input size; for blocks, a table of its branches."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.node_name: str | None = None
        self.show_nothing()

    def show_nothing(self, text: str = "Select a node to see its shapes, parameters and cost.") -> None:
        self.node_name = None
        self.setHtml(f"<p><i>{html.escape(text)}</i></p>")

    def show_node(self, graph, trace, name: str, layer_key: str | None = None) -> None:
        node = graph.node(name)
        ns = trace.nodes.get(name) if trace is not None else None
        preds = graph.predecessors(name)
        in_shapes = [fmt_shape(trace.nodes[p].output_shape) for p in preds] if trace is not None else []
        batch = trace.input_shape[0] if trace is not None else 1
        rows = [
            ("kind", node.kind + (" (training only)" if node.training_only else "")),
            ("module", node.module_type),
            ("stage", node.stage),
            ("input", ", ".join(in_shapes) or MISSING),
            ("output", fmt_shape(ns.output_shape) if ns else MISSING),
            ("parameters", fmt_int(node.params)),
        ]
        if ns is not None:
            rows += [
                (MULTIPLY_ADDS, f"{fmt_count(ns.macs)} ({fmt_int(ns.macs)})" + (f", batch {batch}" if batch > 1 else "")),
                ("activation memory", fmt_bytes(ns.activation_bytes) + (f", batch {batch}" if batch > 1 else "")
                 + " (float32 output)"),
            ]
        rf = "whole input" if node.receptive_field is None else fmt_kernel(node.receptive_field) + " px"
        stride = MISSING if node.effective_stride is None else fmt_kernel(node.effective_stride)
        rows += [("receptive field", rf), ("effective stride", stride)]
        parts = [f"<h3>{html.escape(name)}</h3>", "<table cellspacing='0' cellpadding='3'>"]
        for k, v in rows:
            parts.append(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(str(v))}</td></tr>")
        parts.append("</table>")
        if node.layers and not node.branches:
            parts.append("<h4>Layers</h4><ul>")
            parts += [f"<li>{html.escape(l.describe())} <small>({html.escape(l.name)})</small></li>" for l in node.layers]
            parts.append("</ul>")
        if node.branches:
            parts.append(f"<h4>Branches ({'concatenated' if node.merge == 'cat' else 'added'})</h4>")
            parts.append("<table border='1' cellspacing='0' cellpadding='3'><tr><th>#</th><th>branch</th>"
                         "<th>layers</th><th>out</th></tr>")
            for i, b in enumerate(node.branches, 1):
                layers = _branch_layers_html(b)
                note = f"<br><small>⚠ {html.escape(b.note)}</small>" if b.note else ""
                parts.append(f"<tr><td>{i}</td><td>{html.escape(b.label)}{note}</td><td>{layers}</td>"
                             f"<td align='right'>{b.out_channels}</td></tr>")
            total = sum(b.out_channels for b in node.branches)
            parts.append(f"<tr><td></td><td><b>{'concat' if node.merge == 'cat' else 'add'}</b></td><td></td>"
                         f"<td align='right'><b>{total if node.merge == 'cat' else node.out_channels}</b></td></tr>")
            parts.append("</table>")
        notes = list(node.notes) + ([ns.failure] if ns is not None and ns.failure else [])
        if notes:
            parts.append("<h4>Notes</h4><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        if layer_key:
            parts[1:1] = _selected_html(graph, trace, layer_key)
        self.node_name = name
        self.setHtml("".join(parts))


def _selected_html(graph, trace, key: str) -> list[str]:
    """The selected box inside an expanded block, in words, with its own parameters and output shape."""
    sel = selected_layer(graph, trace, key)
    if sel is None:
        return []
    rows = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>" for k, v in sel.rows)
    return [f"<p><b>Selected:</b> {html.escape(sel.title)}</p>",
            f"<table cellspacing='0' cellpadding='3'>{rows}</table><h4>Its block</h4>"]


def _branch_layers_html(branch) -> str:
    items = [html.escape(l.describe()) for l in branch.layers]
    if branch.parallel:
        items.append("( " + " ‖ ".join(_branch_layers_html(b) for b in branch.parallel) + " )")
    items += [html.escape(l.describe()) for l in branch.tail]
    return " → ".join(items) if items else "identity"
