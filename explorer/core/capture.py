"""Activation capture: one forward that classifies and keeps every branch's output.

The loaded network is traced with torch.fx (sharing its parameters) and an `nn.Identity` probe is
inserted after every tensor the block graph names: the output of each branch of each block and
the output of every other node (stem layers, pools, head). A forward hook on each probe keeps the
tensor, on the device where it was computed; nothing is copied until a view asks for it. The
probes are ordinary modules, so captum's layer methods (Grad-CAM, layer attributions) can target
one branch even where the model computes it with a function (Inception v3's pool branches).
The classifier's BN-folded device copy traces to the same steps (each folded batch norm stays as an
`nn.Identity` call), so `Classifier.classify_captured` probes the very network that classifies.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from torch import fx

from explorer.core.fxtrace import symbolic_trace
from explorer.core.program import _unit_of

if TYPE_CHECKING:
    from explorer.core.blockgraph import BlockGraph


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
            raise KeyError(f"{block} branch {index} was not captured")
        return t


class CaptureModel(nn.Module):
    """The network as a traced module with probes; `forward` returns logits, `capture` also keeps tensors."""

    def __init__(self, module: nn.Module, graph: BlockGraph):
        super().__init__()
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
        for name in probed.values():
            probe = gm.get_submodule(name)
            self.probes[name] = probe
            probe.register_forward_hook(self._keep(name))
        self.block_branches = {bn.name: len(bn.branch_steps) for bn in graph.nodes() if bn.is_block}
        self.node_names = [bn.name for bn in graph.nodes() if not bn.training_only and bn.kind != "input"]

    def _keep(self, name):
        def hook(module, inputs, output):
            store = getattr(self._local, "store", None)
            if store is not None:
                store[name] = output.detach()
        return hook

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gm(x)

    def layer(self, node: str, branch: int | None = None) -> nn.Module:
        """The probe module whose output is `node`'s output (or its branch's): a target for captum."""
        try:
            return self.probes[self.probe_of[(node, branch)]]
        except KeyError:
            raise KeyError(f"no probe for {node}" + ("" if branch is None else f" branch {branch}")) from None

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
