"""Activation capture: one forward that classifies and keeps every branch's output.

The loaded network is traced with torch.fx (sharing its parameters) and an `nn.Identity` probe is
inserted after every tensor the block graph names: the output of each branch of each block and
the output of every other node (stem layers, pools, head). A forward hook on each probe keeps the
tensor, on the device where it was computed; nothing is copied until a view asks for it. The
probes are ordinary modules, so captum's layer methods (Grad-CAM, layer attributions) can target
one branch even where the model computes it with a function (Inception v3's pool branches).
The classifier's BN-folded device copy traces to the same steps (each folded batch norm stays as an
`nn.Identity` call), so `Classifier.classify_captured` probes the very network that classifies.
A torch.export file's module is an fx graph already; its graph is probed as it is, not re-traced.
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from torch import fx

from explorer.core.graph.fxtrace import symbolic_trace
from explorer.core.graph.program import _unit_of

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph


def _aliases(node: fx.Node) -> bool:
    """An aten op whose result shares memory with an argument (a view, or an in-place op)."""
    t = node.target
    return isinstance(t, torch._ops.OpOverload) and any(r.alias_info is not None for r in t._schema.returns)


def _out_of_place(graph: fx.Graph) -> None:
    """Make the in-place aten ops of an exported graph (relu_, add_) write new tensors, as a traced
    forward does, so a probed tensor is not overwritten later (a residual branch by its add_).

    Later readers of the overwritten tensor read the new one instead. Skipped where memory is
    shared (views, graph inputs, parameters), where the rewrite could change the result."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    for n in list(graph.nodes):
        t = n.target
        if n.op != "call_function" or not isinstance(t, torch._ops.OpOverload) or not n.args:
            continue
        args = t._schema.arguments
        if not (args and args[0].alias_info is not None and args[0].alias_info.is_write):
            continue
        base = getattr(torch.ops.aten, t.overloadpacket.__name__.rstrip("_"), None)
        pure = getattr(base, t._overloadname, None) if base is not None else None
        src = n.args[0]
        if pure is None or not isinstance(src, fx.Node) or src.op != "call_function" or _aliases(src):
            continue
        if any(u is not n and _aliases(u) for u in src.users):
            continue
        n.target = pure
        for u in list(src.users):
            if u is not n and order[u] > order[n]:
                u.replace_input_with(src, n)


def _writes_in_place(node: fx.Node, gm: fx.GraphModule) -> bool:
    """A traced call that overwrites its first argument: nn.ReLU(inplace=True), F.relu(x, inplace=True),
    x.add_(y) (a probed tensor read by one of these would be captured with the later values)."""
    if node.op == "call_module":
        return getattr(gm.get_submodule(node.target), "inplace", False) is True
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.endswith("__")
    if node.op == "call_function":
        return node.kwargs.get("inplace") is True or getattr(node.target, "__name__", "").endswith("_")
    return False


def _probe_name(node: str, branch: int | None) -> str:
    base = "probe__" + node.replace(".", "__")
    return base + ("__out" if branch is None else f"__b{branch}")


@dataclass
class Capture:
    """Tensors of one forward: logits and the probed activations (still on the model's device)."""

    logits: torch.Tensor
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # node name -> output
    branches: dict[str, list[torch.Tensor | None]] = field(default_factory=dict)  # block -> per-branch output
    graph_name: str | None = None  # the model whose block graph was probed: views drop another model's

    @property
    def device(self) -> torch.device:
        return self.logits.device

    def branch(self, block: str, index: int) -> torch.Tensor:
        t = self.branches[block][index]
        if t is None:
            raise KeyError(f"{block} branch_index {index} was not captured")
        return t


class CaptureModel(nn.Module):
    """The network as a traced module with probes; `forward` returns logits, `capture` also keeps tensors."""

    def __init__(self, module: nn.Module, graph: BlockGraph):
        super().__init__()
        if isinstance(module, fx.GraphModule):
            # A graph already (torch.export's module): the block graph was read from this very graph,
            # so probe a copy of it; re-tracing would lose the module names its nodes carry.
            gm = fx.GraphModule(module, copy.deepcopy(module.graph), type(module).__name__)
            _out_of_place(gm.graph)
        else:
            was_training = module.training
            gm = symbolic_trace(module.eval())
            module.train(was_training)
        self.graph_name = graph.name
        self.probes: dict[str, nn.Identity] = {}
        self.probe_of: dict[tuple[str, int | None], str] = {}
        # Per thread: a capture on one thread never collects an attribution's batches on another.
        self._local = threading.local()

        # Match the traced nodes to the block graph's steps: within one node of the block graph the
        # operations come in the same order in both traces (the block graph's trace also ran the
        # training-only heads, so fx's generated names can differ; the order does not).
        by_unit: dict[str, list[fx.Node]] = defaultdict(list)
        for n in gm.graph.nodes:
            if n.op not in ("placeholder", "output"):
                unit = _unit_of(n, gm)
                if unit is not None:
                    by_unit[unit].append(n)
        steps = graph.program.steps
        step_node: dict[int, fx.Node] = {}
        for bn in graph.nodes():
            if bn.kind == "input":
                step_node[bn.output_step] = next(n for n in gm.graph.nodes if n.op == "placeholder")
                continue
            if bn.training_only:
                continue
            nodes = by_unit.get(bn.name, [])
            if len(nodes) != len(bn.steps):
                raise RuntimeError(f"{bn.name}: the traced network differs from its block graph")
            for i, n in zip(bn.steps, nodes):
                if steps[i].node.rstrip("_0123456789") != n.name.rstrip("_0123456789"):
                    raise RuntimeError(f"{bn.name}: {n.name} does not match {steps[i].node}")
                step_node[i] = n

        targets: list[tuple[str, int | None, fx.Node]] = []
        for bn in graph.nodes():
            if bn.training_only or bn.kind == "input":
                continue
            targets.append((bn.name, None, step_node[bn.output_step]))
            for k, i in enumerate(bn.branch_steps):
                if i in step_node:
                    targets.append((bn.name, k, step_node[i]))

        probed: dict[fx.Node, str] = {}
        for node_name, branch, n in targets:
            if n in probed:  # one tensor, two roles (a block's output is also the next one's input)
                self.probe_of[(node_name, branch)] = probed[n]
                continue
            name = _probe_name(node_name, branch)
            gm.add_submodule(name, nn.Identity())
            with gm.graph.inserting_after(n):
                p = gm.graph.call_module(name, (n,))
            n.replace_all_uses_with(p, delete_user_cb=lambda user, p=p: user is not p)
            probed[n] = name
            self.probe_of[(node_name, branch)] = name
        gm.recompile()
        self.gm = gm
        for n, name in probed.items():
            probe = gm.get_submodule(name)
            self.probes[name] = probe
            # Kept as a copy only where a later in-place op would overwrite the tensor (resnet's
            # bn1 → ReLU(inplace=True)); everywhere else the probe keeps the tensor itself.
            p = next(u for u in n.users if u.op == "call_module" and u.target == name)
            overwritten = any(_writes_in_place(u, gm) and u.args and u.args[0] is p for u in p.users)
            probe.register_forward_hook(self._keep(name, clone=overwritten))
        self.block_branches = {bn.name: len(bn.branch_steps) for bn in graph.nodes() if bn.is_block}
        #: Per block, the traced node that concatenates (or adds) its branches: its inputs are the branches'
        #: probes, so a knock-out can replace one branch where the block joins it, and only there.
        self.join_nodes = {bn.name: step_node[bn.join_step].name for bn in graph.nodes()
                           if bn.is_block and not bn.training_only and bn.join_step in step_node}
        self.node_names = [bn.name for bn in graph.nodes() if not bn.training_only and bn.kind != "input"]

    def _keep(self, name, clone: bool = False):
        def hook(module, inputs, output):
            store = getattr(self._local, "store", None)
            if store is not None:
                store[name] = output.detach().clone() if clone else output.detach()
        return hook

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gm(x)

    def layer(self, node: str, branch: int | None = None) -> nn.Module:
        """The probe module whose output is `node`'s output (or its branch's): a target for captum."""
        try:
            return self.probes[self.probe_of[(node, branch)]]
        except KeyError:
            raise KeyError(f"no probe for {node}" + ("" if branch is None else f" branch_index {branch}")) from None

    @torch.no_grad()
    def capture(self, x: torch.Tensor) -> Capture:
        """Classify `x` and keep every probed tensor from that same forward."""
        store = self._local.store = {}
        try:
            logits = self.gm(x)
        finally:
            self._local.store = None
        cap = Capture(logits=logits, graph_name=self.graph_name)
        for node in self.node_names:
            cap.outputs[node] = store[self.probe_of[(node, None)]]
        for block, count in self.block_branches.items():
            cap.branches[block] = [
                store.get(self.probe_of.get((block, k), ""), None) for k in range(count)
            ]
        return cap
