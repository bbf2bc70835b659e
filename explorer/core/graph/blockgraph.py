"""The block graph: stem layers, pools, Inception blocks and heads, read from the model itself.

The graph comes from a torch.fx trace of the model's forward (see `program`), never from a
per-model description: a node is a module of the model (a top-level child, or a child of a plain
`nn.Sequential`), an edge is data flowing between two of them, and a node whose output joins
parallel paths by concatenation (or addition) is a block whose branches are read off the layers
that really run in them — kernel shapes, strides and channels included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from explorer.core.text import first_line, fmt_branch, fmt_kernel

if TYPE_CHECKING:
    from explorer.core.graph.program import ShapeProgram, Step
    from explorer.core.model.zoo import ModelSpec, PaperReference

GLOBAL = None  # receptive field of a node that sees the whole input (after global pooling)


@dataclass(frozen=True)
class LayerSpec:
    """One layer that changes shapes: a convolution, a pooling or a fully connected layer."""

    name: str
    type: str  # conv, max_pool, avg_pool, adaptive_avg_pool, adaptive_max_pool, linear
    kernel: tuple[int, int] | None
    stride: tuple[int, int] | None
    padding: tuple[int, int] | None
    out_channels: int

    def describe(self) -> str:
        """E.g. '3×3 conv, 128', '1×7 conv, 192', '3×3 max pool /2'."""
        if self.type == "conv":
            s = f"{fmt_kernel(self.kernel)} conv, {self.out_channels}"
        elif self.type == "linear":
            return f"fc, {self.out_channels}"
        elif self.type.startswith("adaptive"):
            return f"global {'avg' if 'avg' in self.type else 'max'} pool"
        else:
            s = f"{fmt_kernel(self.kernel)} {self.type.replace('_', ' ')}"
        if self.stride and max(self.stride) > 1:
            s += f" /{self.stride[0]}" if self.stride[0] == self.stride[1] else f" /{fmt_kernel(self.stride)}"
        return s


@dataclass(frozen=True)
class BranchSpec:
    """One parallel path of a block, in concatenation order.

    `layers` run first; then, if the branch splits again (Inception v3's 1×3 ‖ 3×1), the
    `parallel` sub-branches, joined by `merge`; then `tail`.
    """

    label: str
    out_channels: int
    layers: tuple[LayerSpec, ...]
    parallel: tuple[BranchSpec, ...] = ()
    merge: str | None = None
    tail: tuple[LayerSpec, ...] = ()
    #: The kernel that characterises the branch (largest convolution), None for pool / identity paths.
    kernel: tuple[int, int] | None = None
    #: The leading 1×1 convolution when it reduces channels before a larger one ("#3×3 reduce").
    reduce_channels: int | None = None
    #: Pooling of a pool branch, and the channels of its projection ("pool proj").
    pool: LayerSpec | None = None
    pool_proj: int | None = None
    note: str | None = None
    #: The constant a residual branch is multiplied by before the addition (Inception-ResNet's 0.1–0.3).
    scale: float | None = None
    #: The sibling branches (1-based) whose concatenation this branch starts from: a DenseNet layer
    #: reads every earlier layer's output. Empty: the branch starts from the block's input.
    reads: tuple[int, ...] = ()

    def all_layers(self) -> list[LayerSpec]:
        out = list(self.layers)
        for b in self.parallel:
            out += b.all_layers()
        return out + list(self.tail)


@dataclass
class BlockNode:
    """A node of the block graph."""

    name: str  # qualified module name, e.g. "inception3a", "Mixed_6e", "layer1.0"
    kind: str  # input, conv, pool, inception, residual, linear, dropout, aux, op
    stage: str  # stem, body, head
    module_type: str
    training_only: bool = False
    params: int = 0
    layers: tuple[LayerSpec, ...] = ()
    branches: tuple[BranchSpec, ...] = ()
    merge: str | None = None  # "cat" or "add" for blocks
    out_channels: int | None = None
    receptive_field: tuple[int, int] | None = None  # None: sees the whole input
    effective_stride: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()
    steps: tuple[int, ...] = field(default=(), repr=False)  # program steps owned by this node
    output_step: int = field(default=-1, repr=False)
    #: For blocks: the step that joins the branches, and the step producing each branch's output.
    join_step: int | None = field(default=None, repr=False)
    branch_steps: tuple[int, ...] = field(default=(), repr=False)

    @property
    def is_block(self) -> bool:
        return self.kind in ("inception", "residual")


class NodeGraph:
    """Read access to a networkx DiGraph of BlockNodes kept in data-flow order (graph.graph["order"])."""

    graph: nx.DiGraph

    def nodes(self) -> list[BlockNode]:
        """All nodes in data-flow order."""
        return [self.graph.nodes[n]["node"] for n in self.graph.graph["order"]]

    def node(self, name: str) -> BlockNode:
        return self.graph.nodes[name]["node"]

    def blocks(self) -> list[BlockNode]:
        return [n for n in self.nodes() if n.is_block]

    def successors(self, name: str) -> list[str]:
        return list(self.graph.successors(name))

    def predecessors(self, name: str) -> list[str]:
        return list(self.graph.predecessors(name))


class BlockGraph(NodeGraph):
    """A model's block graph (a networkx DiGraph of BlockNodes) and the program that traces its shapes."""

    def __init__(self, name: str, graph: nx.DiGraph, program: ShapeProgram, *, model, native_size,
                 total_params: int, training_only_params: int, in_channels: int = 3):
        self.name = name
        self.graph = graph
        self.program = program
        self.model = model  # on the meta device: structure only
        self.native_size = native_size
        self.in_channels = in_channels
        self.total_params = total_params
        self.total_params_inference = total_params - training_only_params
        self._min_input: tuple[int | None, int | None] | None = None
        #: Why the data-flow view is unavailable (None: edges are the real data flow).
        self.dataflow_reason: str | None = None


# -- building ----------------------------------------------------------------------------------


def build_block_graph(spec: ModelSpec) -> BlockGraph:
    """Trace `spec`'s network on the meta device and build its block graph."""
    model = spec.build(device="meta")
    return block_graph_from_module(model, spec.name, native_size=spec.native_size, paper=spec.paper)


def block_graph_from_module(model, name: str, *, native_size=(224, 224), paper: PaperReference | None = None
                            ) -> BlockGraph:
    """The block graph of `model` from fx traces of its forward in eval and in training mode (what only
    training runs is an auxiliary head); its module tree, with the reason, where the forward cannot
    be traced."""
    from explorer.core.graph.program import ShapeProgram

    try:
        gm_eval, gm_train = _traced_modes(model)
    except Exception as e:  # data-dependent control flow and the like: the module tree still works
        from explorer.core.graph.moduletree import module_tree_graph

        first = first_line(e)
        return module_tree_graph(model.eval(), name, native_size,
                                 f"the forward cannot be traced ({type(e).__name__}: {first})")
    training_only = _training_only_units(gm_eval, gm_train)
    program = ShapeProgram(gm_train, training_only)
    # Input channels: what the first convolution expects (3 for RGB networks).
    in_channels = next((s.attrs["in_channels"] for s in program.steps if s.kind == "conv"), 3)

    # One run at the native size gives the channels of every tensor.
    vals, _ = program.run((1, in_channels, *native_size))
    node_objs = _unit_nodes(program.steps, vals, model, training_only, paper)
    _assign_stages(node_objs)
    graph = nx.DiGraph()
    graph.graph["order"] = list(node_objs)
    graph.graph["model"] = name
    for unit, node in node_objs.items():
        graph.add_node(unit, node=node)
    _add_data_flow(graph, program.steps)

    total = sum(p.numel() for p in model.parameters())
    aux = sum(node_objs[u].params for u in training_only)
    return BlockGraph(name, graph, program, model=model, native_size=tuple(native_size), total_params=total,
                      training_only_params=aux, in_channels=in_channels)


def _traced_modes(model):
    """(eval-mode graph, training-mode graph) of `model`'s forward, the model left in the mode it was in.

    An fx graph already (torch.export's module) is both: its nodes carry their module stack. A forward
    that traces only in eval mode has no training-only heads to show: its eval graph is both. Raises
    what the eval-mode trace raises."""
    from torch import fx

    from explorer.core.graph.fxtrace import symbolic_trace

    if isinstance(model, fx.GraphModule):
        return model, model
    was_training = model.training
    try:
        gm_eval = symbolic_trace(model.eval())
    except Exception:
        model.train(was_training)
        raise
    try:
        gm_train = symbolic_trace(model.train())
    except Exception:
        gm_train = gm_eval
    model.train(was_training)
    return gm_eval, gm_train


def _training_only_units(gm_eval, gm_train) -> set[str]:
    """The units (see program._unit_of) that run in training mode only: auxiliary classifiers."""
    from explorer.core.graph.program import _unit_of

    eval_units = {_unit_of(n, gm_eval) for n in gm_eval.graph.nodes if n.op != "placeholder"}
    train_units = {_unit_of(n, gm_train) for n in gm_train.graph.nodes if n.op != "placeholder"}
    return {u for u in train_units - eval_units if u is not None}


def _unit_nodes(steps, vals, model, training_only: set[str], paper: PaperReference | None) -> dict[str, BlockNode]:
    """Unit name → its node, in data-flow order (the order of each unit's first step). A unit's output
    is its last step read outside it (or the input itself); its receptive field is that step's."""
    order: list[str] = []
    owned: dict[str, list[int]] = {}
    for s in steps:
        if s.unit is None:
            continue
        if s.unit not in owned:
            order.append(s.unit)
            owned[s.unit] = []
        owned[s.unit].append(s.index)

    consumers: dict[int, list[int]] = {s.index: [] for s in steps}
    for s in steps:
        for i in s.inputs:
            consumers[i].append(s.index)

    rf = _receptive_fields(steps)
    node_objs: dict[str, BlockNode] = {}
    for unit in order:
        idx = owned[unit]
        own = set(idx)
        outs = [i for i in idx if any(c not in own for c in consumers[i]) or steps[i].kind == "input"]
        out = outs[-1] if outs else idx[-1]
        node = _describe_unit(unit, idx, out, steps, vals, model, training_only, paper)
        node.receptive_field, node.effective_stride = rf[out]
        node_objs[unit] = node
    return node_objs


def _assign_stages(node_objs: dict[str, BlockNode]) -> None:
    """Set each node's stage: the stem before the first block (the input always), the head after the
    last, the body between them; training-only nodes, and every node of a network without blocks, are body."""
    first_block = last_block = None
    for unit, node in node_objs.items():
        if node.is_block and not node.training_only:
            first_block = first_block or unit
            last_block = unit
    order = list(node_objs)
    seen_block = False
    for unit, node in node_objs.items():
        if first_block is None:
            node.stage = "body"
        elif unit == first_block:
            seen_block = True
        if first_block is not None:
            if node.kind == "input":
                node.stage = "stem"
            elif node.training_only:
                node.stage = "body"
            elif not seen_block:
                node.stage = "stem"
            elif order.index(unit) > order.index(last_block):
                node.stage = "head"
            else:
                node.stage = "body"


def _add_data_flow(graph: nx.DiGraph, steps) -> None:
    """Edges: data flowing from one node's steps into another's, seen through glue ops (steps of no unit)."""
    producer_cache: dict[int, set[str]] = {}

    def producers(i: int) -> set[str]:
        if i in producer_cache:
            return producer_cache[i]
        s = steps[i]
        result = {s.unit} if s.unit is not None else set().union(*(producers(j) for j in s.inputs)) if s.inputs else set()
        producer_cache[i] = result
        return result

    for s in steps:
        if s.unit is None:
            continue
        for i in s.inputs:
            for p in producers(i):
                if p != s.unit:
                    graph.add_edge(p, s.unit)


def _layer_spec(step: Step, vals) -> LayerSpec:
    a = step.attrs
    if step.kind == "conv":
        typ = "conv"
    elif step.kind == "pool":
        typ = a["pool"]
    elif step.kind == "adaptive_pool":
        typ = "adaptive_max_pool" if "Max" in a.get("module_type", "") or "max" in step.layer else "adaptive_avg_pool"
    else:
        typ = "linear"
    v = vals[step.index]
    channels = a.get("out_channels") or (v[1] if v is not None and len(v) > 1 else 0)
    return LayerSpec(step.layer, typ, a.get("kernel"), a.get("stride"), a.get("padding"), int(channels))


def _tensor_inputs(step: Step, own: set[int], steps, vals) -> list[int]:
    from explorer.core.graph.program import TShape

    return [i for i in step.inputs if i in own and isinstance(vals[i], TShape)]


def _ancestors(i: int, own: set[int], steps) -> set[int]:
    seen, todo = set(), [i]
    while todo:
        j = todo.pop()
        for k in steps[j].inputs:
            if k in own and k not in seen:
                seen.add(k)
                todo.append(k)
    return seen


def _join_inputs(step: Step, vals) -> list[int] | None:
    """The tensors a concatenation or an addition joins (inside or outside the block), else None."""
    from explorer.core.graph.program import TShape

    if step.kind == "cat" or (step.kind == "broadcast" and step.attrs.get("op") in ("add", "sub")):
        ins = [i for i in step.inputs if isinstance(vals[i], TShape)]
        return ins if len(ins) >= 2 else None
    return None


def _is_join(step: Step, own, steps, vals) -> bool:
    return _join_inputs(step, vals) is not None


@dataclass(frozen=True)
class _Reads:
    """A walk item: the branch starts from the concatenation of these sibling branches (1-based)."""

    branches: tuple[int, ...]


def _walk(start: int, stop: int | None, own: set[int], steps, vals, depth: int = 0,
          siblings: dict[int, int] | None = None) -> list:
    """Layers from `stop` (exclusive; None: the block's input) to `start`, in execution order.

    A nested join yields a tuple ("split", merge, [sub-walks]). Joins are opened one level deep
    (Inception v3's 1×3 ‖ 3×1, Inception-ResNet's branches before the add); a join deeper than that
    ends the walk. A join of the block's own branches (`siblings`: join input step → branch number;
    DenseNet's concatenation of every earlier layer) is named, not opened, so the description
    stays linear in the size of the block.
    """
    items: list = []
    i: int | None = start
    while i is not None and i in own and i != stop:
        s = steps[i]
        if _is_join(s, own, steps, vals):
            if depth >= 1:
                break
            ins = _join_inputs(s, vals)
            if siblings and all(j in siblings for j in ins):
                items.append(_Reads(tuple(siblings[j] for j in ins)))
                break
            common = set.intersection(*(_ancestors(j, own, steps) | {j} for j in ins))
            split = max(common) if common else None
            subs = [_walk(j, split, own, steps, vals, depth + 1) for j in ins]
            items.append(("split", "cat" if s.kind == "cat" else "add", subs))
            i = split
            continue
        if s.is_layer:
            items.append(_layer_spec(s, vals))
        ins = _tensor_inputs(s, own, steps, vals)
        i = ins[0] if ins else None
    items.reverse()
    return items


def _branch_from_walk(items: list, out_channels: int) -> BranchSpec:
    layers, parallel, tail, merge, reads = [], (), [], None, ()
    for it in items:
        if isinstance(it, _Reads):
            reads = it.branches
        elif isinstance(it, tuple):
            merge = it[1]
            parallel = tuple(_branch_from_walk(sub, _walk_channels(sub)) for sub in it[2])
        elif parallel:
            tail.append(it)
        else:
            layers.append(it)
    flat = layers + [l for b in parallel for l in b.all_layers()] + tail
    convs = [l for l in flat if l.type == "conv"]
    kernel = max((l.kernel for l in convs if l.kernel), key=lambda k: (k[0] * k[1], k), default=None)
    if kernel == (1, 1) and not (flat and flat[0].type.endswith("pool")):
        kernel = (1, 1)
    pool = flat[0] if flat and flat[0].type in ("max_pool", "avg_pool") else None
    if pool is not None:
        kernel = None
    pool_proj = convs[0].out_channels if pool is not None and convs and convs[0].kernel == (1, 1) else None
    reduce = None
    if len(flat) > 1 and flat[0].type == "conv" and flat[0].kernel == (1, 1) and (len(convs) > 1 or parallel):
        reduce = flat[0].out_channels
    b = BranchSpec(label="", out_channels=out_channels, layers=tuple(layers), parallel=parallel, merge=merge,
                   tail=tuple(tail), kernel=kernel, reduce_channels=reduce, pool=pool, pool_proj=pool_proj,
                   reads=reads)
    return _with_label(b)


def _walk_channels(items: list) -> int:
    for it in reversed(items):
        if isinstance(it, tuple):
            subs = [_walk_channels(s) for s in it[2]]
            return sum(subs) if it[1] == "cat" else max(subs)
        return it.out_channels
    return 0


def _with_label(b: BranchSpec) -> BranchSpec:
    from dataclasses import replace

    return replace(b, label=branch_label(b))


def _ranges(numbers: tuple[int, ...]) -> str:
    """(1, 2, 3, 5) → '1–3, 5'."""
    out, run = [], []
    for n in numbers:
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def branch_label(b: BranchSpec, paper_kernel: tuple[int, int] | None = None) -> str:
    """A role label read from the layers: '#1×1', '#3×3 reduce → #3×3', '3×3 max pool → pool proj', …

    paper_kernel: the kernel the paper gives this branch, where it differs from the real one. The
    label then names the paper's column and keeps the real kernel beside it: torchvision's GoogLeNet
    branch 3 reads '#5×5 reduce → #5×5 (3×3 kernel)'.
    """
    # Renamed only where one convolution stands for the paper's one (not a stack replacing it).
    renamed = (paper_kernel is not None and b.kernel is not None and paper_kernel != b.kernel
               and sum(1 for l in b.all_layers() if l.type == "conv" and l.kernel == b.kernel) == 1)

    def column(k: tuple[int, int]) -> str:  # the paper's column name for a square kernel
        return fmt_kernel(paper_kernel if renamed and k == b.kernel else k)

    flat_seq: list[Any] = list(b.layers) + ([b.parallel] if b.parallel else []) + list(b.tail)
    if not flat_seq:
        return "identity (shortcut)"
    parts: list[str] = [f"(branches {_ranges(b.reads)} concatenated)"] if b.reads else []
    # Factorized: a 1×n and an n×1 convolution one after the other (not side by side).
    seq = [l for l in list(b.layers) + list(b.tail) if l.type == "conv" and l.kernel]
    factorized = sorted({max(a.kernel) for a, c in zip(seq, seq[1:])
                         if a.kernel[0] != a.kernel[1] and c.kernel == a.kernel[::-1]})
    for pos, it in enumerate(flat_seq):
        if isinstance(it, tuple):
            parts.append("(" + " ‖ ".join(sub.label for sub in it) + ")")
            continue
        prev = flat_seq[pos - 1] if pos else None
        nxt = flat_seq[pos + 1] if pos + 1 < len(flat_seq) else None
        if it.type == "conv":
            stride = f" /{it.stride[0]}" if it.stride and max(it.stride) > 1 else ""
            if it.kernel == (1, 1) and isinstance(prev, LayerSpec) and prev.type in ("max_pool", "avg_pool"):
                parts.append("pool proj")
            elif it.kernel == (1, 1) and pos == 0 and nxt is not None:
                target = nxt.kernel if isinstance(nxt, LayerSpec) and nxt.type == "conv" else None
                if target and target[0] == target[1] and target != (1, 1):
                    parts.append(f"#{column(target)} reduce{stride}")
                else:
                    parts.append(f"#1×1 reduce{stride}")
            elif it.kernel and it.kernel[0] == it.kernel[1]:
                parts.append(f"#{column(it.kernel)}{stride}")
            else:
                parts.append(f"{fmt_kernel(it.kernel)}{stride}")
        else:
            parts.append(it.describe())
    label = " → ".join(parts)
    if renamed:
        label += f" ({fmt_kernel(b.kernel)} kernel)"
    if factorized:
        label += " (factorized " + ", ".join(f"{n}×{n}" for n in factorized) + ")"
    if b.scale is not None:
        label += f" → ×{b.scale:g}"
    return label


def _distinct_labels(branches: tuple[BranchSpec, ...]) -> tuple[BranchSpec, ...]:
    """Branches whose labels would read the same (two identical paths of one block) get their number
    appended, '#3×3 reduce → #3×3 (branch 2)', so that every view can tell them apart."""
    from collections import Counter
    from dataclasses import replace

    seen = Counter(b.label for b in branches)
    return tuple(replace(b, label=f"{b.label} ({fmt_branch(i)})") if seen[b.label] > 1 else b
                 for i, b in enumerate(branches))


def _scaled(branch: BranchSpec, i: int, own: set[int], steps) -> BranchSpec:
    """`branch` with the constant factor its output is multiplied by before a residual addition, if any."""
    from dataclasses import replace

    while i in own and steps[i].kind in ("identity", "broadcast"):
        s = steps[i]
        if s.kind == "broadcast" and s.attrs.get("op") == "mul" and "scalar" in s.attrs:
            return _with_label(replace(branch, scale=s.attrs["scalar"]))
        if s.kind == "broadcast" or len(s.inputs) != 1:
            break
        i = s.inputs[0]
    return branch


class _Missing:
    """Stands for a module that a traced graph names but does not contain."""

    def __init__(self, name: str, type_name: str):
        self.name, self.type_name = name, type_name


def _module_type(module) -> str:
    return module.type_name if isinstance(module, _Missing) else type(module).__name__


def _describe_unit(unit, idx, out, steps, vals, model, training_only, paper) -> BlockNode:
    """The node of `unit`, which owns program steps `idx` and outputs step `out`: its module, layers and
    parameters, its kind and, where parallel paths join, its branches (checked against the `paper`)."""
    from explorer.core.graph.program import TShape

    if unit == "input":
        return BlockNode(name="input", kind="input", stage="stem", module_type="input",
                         out_channels=vals[out][1], steps=tuple(idx), output_step=out)
    module, params = _unit_module(unit, idx, steps, model)
    own = set(idx)
    layers = tuple(_layer_spec(steps[i], vals) for i in idx if steps[i].is_layer)
    out_val = vals[out]
    out_channels = out_val[1] if isinstance(out_val, TShape) and len(out_val) > 1 else None
    kind, branches, merge, notes = None, (), None, []
    join_step, branch_steps = None, ()

    j = _join_before(out, own, steps, vals)
    if j is not None:
        join = steps[j]
        join_step, branch_steps = j, tuple(_join_inputs(join, vals))
        merge = "cat" if join.kind == "cat" else "add"
        kind = "inception" if merge == "cat" else "residual"
        branches = _join_branches(unit, j, own, steps, vals)
        if paper is not None and merge == "cat":
            branches, notes = _against_paper(branches, paper.branch_kernels.get(_module_type(module)), paper)
    branches = _distinct_labels(branches)
    if unit in training_only:
        kind = "aux"
        notes.append("auxiliary classifier: runs in training only")
    if kind is None:
        kind = _plain_kind(layers, _module_type(module))
    return BlockNode(
        name=unit, kind=kind, stage="body", module_type=_module_type(module), training_only=unit in training_only,
        params=params, layers=layers, branches=branches, merge=merge, out_channels=out_channels,
        notes=tuple(notes), steps=tuple(idx), output_step=out, join_step=join_step, branch_steps=branch_steps,
    )


def _unit_module(unit, idx, steps, model) -> tuple[Any, int]:
    """(the unit's module, its parameter count); a `_Missing` for a unit the model names but does not
    keep as a module of its type (torch.export's graph modules)."""
    # The type torch.export recorded for the unit (its graph module keeps bare nn.Modules).
    unit_type = next((steps[i].attrs["unit_type"] for i in idx if "unit_type" in steps[i].attrs), None)
    try:
        module = model.get_submodule(unit)
        params = sum(p.numel() for p in module.parameters())
        if unit_type is not None and type(module).__name__ == "Module":
            module = _Missing(unit, unit_type)
    except AttributeError:  # a torch.export graph keeps the module names, not the modules
        module = _Missing(unit, unit_type or steps[idx[0]].attrs.get("module_type", "module"))
        params = sum(p.numel() for n, p in model.named_parameters() if n.startswith(unit + "."))
    return module, params


def _join_before(out: int, own: set[int], steps, vals) -> int | None:
    """The step joining parallel paths that the unit's output `out` comes from through single-input
    steps (a convolution included, as a block's projection after its join), or None."""
    j = out
    while j in own and not _is_join(steps[j], own, steps, vals):
        ins = _tensor_inputs(steps[j], own, steps, vals)
        if len(ins) != 1 or steps[j].is_layer and steps[j].kind != "conv":
            break
        j = ins[0]
    return j if j in own and _is_join(steps[j], own, steps, vals) else None


def _join_branches(unit, j: int, own: set[int], steps, vals) -> tuple[BranchSpec, ...]:
    """The branches join step `j` brings together, read back from each of its inputs. The shortcut of a
    residual block is a tensor from outside the block: an empty walk; an addition's branches keep their
    scale; a concatenation's channels must add up."""
    join = steps[j]
    inputs = _join_inputs(join, vals)
    siblings = {i: k for k, i in enumerate(inputs, 1)}
    branches = tuple(
        _branch_from_walk(_walk(i, None, own, steps, vals, siblings=siblings),
                          vals[i][1] if len(vals[i]) > 1 else 0)
        for i in inputs
    )
    if join.kind != "cat":
        return tuple(_scaled(b, i, own, steps) for b, i in zip(branches, inputs))
    if join.attrs.get("dim", 1) % 4 == 1:
        total = sum(b.out_channels for b in branches)
        assert total == vals[j][1], f"{unit}: branch channels {total} ≠ concatenated {vals[j][1]}"
    return branches


def _against_paper(branches: tuple[BranchSpec, ...], expected, paper: PaperReference
                   ) -> tuple[tuple[BranchSpec, ...], list[str]]:
    """(branches, notes): a branch whose kernel differs from the one the paper gives it (`expected`, one
    per branch, None where the paper gives none) carries a note and the paper's name in its label."""
    from dataclasses import replace

    if not expected or len(expected) != len(branches):
        return branches, []
    fixed, notes = [], []
    for i, (b, k) in enumerate(zip(branches, expected)):
        if k is not None and b.kernel is not None and b.kernel != k:
            note = (f"{fmt_branch(i)} uses a {fmt_kernel(b.kernel)} kernel where the paper has"
                    f" {fmt_kernel(k)} ({paper.citation})")
            notes.append(note)
            b = replace(b, note=note, label=branch_label(b, paper_kernel=k))
        fixed.append(b)
    return tuple(fixed), notes


def _plain_kind(layers: tuple[LayerSpec, ...], module_type: str) -> str:
    """The kind of a node that joins nothing, from the layers it runs (else its module's type)."""
    types = {l.type for l in layers}
    if "conv" in types:
        return "conv"
    if types & {"max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool"}:
        return "pool"
    if "linear" in types:
        return "linear"
    if "Dropout" in module_type:
        return "dropout"
    return "op"


def _receptive_fields(steps) -> list[tuple[tuple[int, int] | None, tuple[int, int] | None]]:
    """Per step: (receptive field h×w, effective stride h×w); (None, None) once pooling is global."""
    rf: list = [None] * len(steps)
    for s in steps:
        ins = [rf[i] for i in s.inputs if rf[i] is not None]
        if s.kind == "input":
            rf[s.index] = ((1, 1), (1, 1))
            continue
        if s.attrs.get("constant"):  # a parameter or buffer (torch.export's weights are graph inputs)
            continue
        if s.kind in ("adaptive_pool", "flatten") or s.kind == "linear":
            rf[s.index] = (GLOBAL, GLOBAL)
            continue
        if not ins:
            rf[s.index] = (GLOBAL, GLOBAL)
            continue
        if any(r[0] is GLOBAL for r in ins):
            rf[s.index] = (GLOBAL, GLOBAL)
            continue
        if s.kind in ("conv", "pool"):
            (rh, rw), (jh, jw) = ins[0]
            ekh, ekw = s.attrs["eff_kernel"]
            sh, sw = s.attrs["stride"]
            rf[s.index] = ((rh + (ekh - 1) * jh, rw + (ekw - 1) * jw), (jh * sh, jw * sw))
        else:
            rf[s.index] = (
                (max(r[0][0] for r in ins), max(r[0][1] for r in ins)),
                (max(r[1][0] for r in ins), max(r[1][1] for r in ins)),
            )
    return rf
