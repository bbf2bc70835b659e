"""Plain-text exports of a shape trace: JSON, CSV, Markdown and an aligned table."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from explorer.core.graph.blockgraph import BlockGraph, BranchSpec, LayerSpec
from explorer.core.shapes.trace import ShapeTrace
from explorer.core.text import COUNT_UNITS, MISSING, MULT_ADDS, MULTIPLY_ADDS, fmt_bytes, fmt_count, fmt_int, fmt_kernel, fmt_shape


def layer_record(layer: LayerSpec) -> dict[str, Any]:
    return {
        "name": layer.name,
        "type": layer.type,
        "kernel": list(layer.kernel) if layer.kernel else None,
        "stride": list(layer.stride) if layer.stride else None,
        "padding": list(layer.padding) if layer.padding else None,
        "out_channels": layer.out_channels,
    }


def branch_record(branch: BranchSpec) -> dict[str, Any]:
    rec = {
        "label": branch.label,
        "out_channels": branch.out_channels,
        "layers": [layer_record(l) for l in branch.all_layers()],
    }
    if branch.parallel:
        rec["parallel"] = [branch_record(b) for b in branch.parallel]
        rec["merge"] = branch.merge
    if branch.note:
        rec["note"] = branch.note
    return rec


def compact_branch(branch: BranchSpec) -> str:
    """'1×1 96 → 3×3 128', '3×3 max → 1×1 32', '1×1 384 → (1×3 384 ‖ 3×1 384)'."""

    def one(l: LayerSpec) -> str:
        k = fmt_kernel(l.kernel)
        s = f"/{l.stride[0]}" if l.stride and max(l.stride) > 1 else ""
        if l.type == "conv":
            return f"{k}{s} {l.out_channels}"
        if l.type.endswith("pool") and not l.type.startswith("adaptive"):
            return f"{k}{s} {l.type.split('_')[0]}"
        return l.describe()

    parts = [one(l) for l in branch.layers]
    if branch.parallel:
        parts.append("(" + " ‖ ".join(compact_branch(b) for b in branch.parallel) + ")")
    parts += [one(l) for l in branch.tail]
    return " → ".join(parts) if parts else "identity"


def trace_records(graph: BlockGraph, trace: ShapeTrace) -> list[dict[str, Any]]:
    """One record per node (the input excluded), in data-flow order."""
    out = []
    for node in graph.nodes():
        if node.kind == "input":
            continue
        t = trace.nodes[node.name]
        rec = {
            "name": node.name,
            "kind": node.kind,
            "stage": node.stage,
            "training_only": node.training_only,
            "output_shape": list(t.output_shape) if t.output_shape is not None else None,
            "params": t.params,
            "macs": t.macs,
            "activation_bytes": t.activation_bytes,
            "receptive_field": list(t.receptive_field) if t.receptive_field else "global",
            "effective_stride": list(t.effective_stride) if t.effective_stride else "global",
            "branches": [branch_record(b) for b in node.branches],
        }
        if not node.branches:
            rec["layers"] = [layer_record(l) for l in node.layers]
        if node.notes:
            rec["notes"] = list(node.notes)
        if t.failure:
            rec["failure"] = t.failure
        out.append(rec)
    return out


def trace_to_json(graph: BlockGraph, trace: ShapeTrace) -> str:
    doc = {
        "model": trace.model,
        "input": list(trace.input_shape),
        "nodes": trace_records(graph, trace),
        "total_params": trace.total_params,
        "total_params_inference": trace.total_params_inference,
        "total_macs": trace.total_macs,
        "total_macs_with_aux": trace.total_macs_with_aux,
        "total_activation_bytes": trace.total_activation_bytes,
        "min_input": list(trace.min_input),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


#: The shape trace as a table (columns, rows of text, totals): what the text exports and the handout show.
TRACE_COLUMNS = ("name", "kind", "branches", "output", "params", MULT_ADDS, "RF")


def _row(graph: BlockGraph, trace: ShapeTrace, name: str) -> list[str]:
    node, t = graph.node(name), trace.nodes[name]
    kind = node.kind + (" (training only)" if node.training_only else "")
    branches = " ‖ ".join(compact_branch(b) for b in node.branches)
    runs = t.output_shape is not None  # why not is said under the table (`trace_totals`), not in a cell
    rf = fmt_kernel(t.receptive_field) if t.receptive_field else "global"
    return [name, kind, branches, fmt_shape(t.output_shape), fmt_int(t.params), fmt_int(t.macs) if runs else MISSING,
            rf]


def trace_rows(graph: BlockGraph, trace: ShapeTrace) -> list[list[str]]:
    return [_row(graph, trace, n.name) for n in graph.nodes() if n.kind != "input"]


def trace_totals(trace: ShapeTrace) -> list[str]:
    """The lines under the trace's table: the input; the parameters and multiply-adds at inference and with
    the training-only heads that run at this size (named); each head that cannot run, and why; activations;
    the units."""
    mh, mw = trace.min_input
    h, w = trace.input_shape[2:]
    running, failing = trace.heads
    params = f"params {fmt_int(trace.total_params_inference)} ({fmt_count(trace.total_params_inference)})"
    macs = f"{MULTIPLY_ADDS} {fmt_int(trace.total_macs)} ({fmt_count(trace.total_macs)})"
    if running or failing:
        params, macs = params + " at inference", macs + " at inference"
    if running:
        names = " and ".join(t.name for t in running)
        with_heads = trace.total_params_inference + sum(t.params for t in running)
        params += (f"; {fmt_int(with_heads)} ({fmt_count(with_heads)}) with {names} (training only), which "
                   f"{'run' if len(running) > 1 else 'runs'} at {h}×{w}")
        macs += f"; {fmt_int(trace.total_macs_with_aux)} ({fmt_count(trace.total_macs_with_aux)}) with {names}"
    elif failing:
        params += f"; no training-only head runs at {h}×{w}"
    return [
        f"input {fmt_shape(trace.input_shape)} (N×C×H×W), minimum {mh}×{mw}",
        params,
        macs,
        *(f"{t.name} (training only, {fmt_int(t.params)} params) cannot run at {h}×{w}: "
          f"{t.failure.removeprefix(t.name + ': ')}" for t in failing),
        f"activations {fmt_bytes(trace.total_activation_bytes)} (float32)",
        f"units: {COUNT_UNITS}; KiB = 2¹⁰ bytes, MiB = 2²⁰, GiB = 2³⁰, TiB = 2⁴⁰",
    ]


def trace_to_csv(graph: BlockGraph, trace: ShapeTrace) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "kind", "training_only", "branches", "output_shape", "params", "macs", "activation_bytes",
                "receptive_field"])
    for node in graph.nodes():
        if node.kind == "input":
            continue
        t = trace.nodes[node.name]
        w.writerow([
            node.name, node.kind, node.training_only, " ‖ ".join(compact_branch(b) for b in node.branches),
            "x".join(map(str, t.output_shape)) if t.output_shape else "", t.params, t.macs, t.activation_bytes,
            "x".join(map(str, t.receptive_field)) if t.receptive_field else "global",
        ])
    return buf.getvalue()


def trace_to_markdown(graph: BlockGraph, trace: ShapeTrace) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(TRACE_COLUMNS) + " |", "|" + "|".join("---" for _ in TRACE_COLUMNS) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in trace_rows(graph, trace)]
    return "\n".join(lines + [""] + [f"- {t}" for t in trace_totals(trace)]) + "\n"


def trace_to_table(graph: BlockGraph, trace: ShapeTrace) -> str:
    rows = [list(TRACE_COLUMNS)] + trace_rows(graph, trace)
    widths = [max(len(r[i]) for r in rows) for i in range(len(TRACE_COLUMNS))]
    right = {4, 5}
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines + [""] + trace_totals(trace)) + "\n"


TRACE_FORMATS = {"table": trace_to_table, "json": trace_to_json, "csv": trace_to_csv, "markdown": trace_to_markdown}
