"""The fallback when a model's forward cannot be traced with torch.fx: its module tree with shapes.

Data-dependent control flow (an `if` on a tensor's value, a loop over its length) defeats
symbolic tracing. The model still gets a block graph — one node per top-level module, in the order
the forward calls them — and shapes for any input size, from a forward on the meta device with a
hook on each of those modules (slower than the compiled program, still no real computation). The
graph says why its data-flow view is unavailable.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from explorer.core.graph.program import LayerFailed, Step, StepFailed, TShape
from explorer.core.text import first_line

_KINDS = ((nn.modules.conv._ConvNd, "conv"), (nn.modules.pooling._MaxPoolNd, "pool"),
          (nn.modules.pooling._AvgPoolNd, "pool"), (nn.modules.pooling._AdaptiveAvgPoolNd, "pool"),
          (nn.Linear, "linear"), (nn.modules.dropout._DropoutNd, "dropout"))


class NeedsRealTensors(LayerFailed):
    """The forward failed on the meta device (it reads a tensor's values): build the model for real."""



class HookProgram:
    """Shapes from a forward with hooks: same interface as ShapeProgram (steps, run, input_index)."""

    def __init__(self, model: nn.Module, units: list[str]):
        self.model = model
        self.steps: list[Step] = [Step(0, "input", "input", "input", "input", ())]
        for k, unit in enumerate(units, 1):
            step = Step(k, unit, unit, unit, "module", (k - 1,))
            step.macs = lambda i, o, u=unit: self._macs.get(u, 0)
            self.steps.append(step)
        self.input_index = 0
        self._macs: dict[str, int] = {}
        self.call_order: list[str] = []

    def _device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("meta")

    def run(self, input_shape: tuple[int, ...], *, stop_on_training_only: bool = False):
        shapes: dict[str, TShape] = {}
        current: list[str] = []
        handles = []
        order: list[str] = []
        whole = [s.unit for s in self.steps[1:]] == [WHOLE]
        for step in self.steps[1:] if not whole else []:
            mod = self.model.get_submodule(step.unit)

            def pre(m, inputs, u=step.unit):
                current.append(u)
                if u not in order:
                    order.append(u)

            def post(m, inputs, output, u=step.unit):
                current.pop()
                if isinstance(output, torch.Tensor):
                    shapes[u] = TShape(output.shape)

            handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
        counter = FlopCounterMode(display=False, depth=None)
        try:
            with torch.no_grad(), counter:
                out = self.model(torch.zeros(input_shape, device=self._device()))
            if whole and isinstance(out, torch.Tensor):
                shapes[WHOLE] = TShape(out.shape)
        except Exception as e:  # the model's own error, attributed to the module that raised it
            unit = current[-1] if current else None
            step = next((s for s in self.steps if s.unit == unit), self.steps[-1])
            raise StepFailed(step, f"{unit or 'forward'}: {first_line(e)}") from None
        finally:
            for h in handles:
                h.remove()
        counts = counter.get_flop_counts()
        root = type(self.model).__name__
        self._macs = {u: sum(counts.get(f"{root}.{u}" if u != WHOLE else "Global", {}).values()) // 2 for u in shapes}
        self.call_order = order
        vals: list[Any] = [None] * len(self.steps)
        vals[0] = TShape(input_shape)
        for s in self.steps[1:]:
            vals[s.index] = shapes.get(s.unit)
        return vals, {}


WHOLE = "model"  # the one node of a model whose modules cannot be hooked (TorchScript)


def module_tree_graph(model: nn.Module, name: str, native_size, reason: str):
    """A BlockGraph of `model`'s top-level modules in call order, shapes by hooked meta forwards."""
    from explorer.core.graph.blockgraph import BlockGraph, BlockNode

    # A TorchScript module's children can be listed but not hooked or looked up.
    units = [] if isinstance(model, torch.jit.ScriptModule) else [n for n, _ in model.named_children()]
    program = HookProgram(model, units)
    first_conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    in_channels = first_conv.in_channels if first_conv is not None else 3
    try:
        program.run((1, in_channels, *native_size))
    except StepFailed as e:
        error = NeedsRealTensors if program._device().type == "meta" else LayerFailed
        raise error(f"the model does not run at its native size {native_size}: {e.reason}") from None
    # A TorchScript module calls no Python hooks: it becomes one node, the whole model.
    called = program.call_order or [WHOLE]
    # Keep the modules the forward calls, in that order (the steps are re-made to match).
    program = HookProgram(model, called)
    program.run((1, in_channels, *native_size))
    graph = nx.DiGraph()
    graph.graph["order"] = ["input", *called]
    graph.graph["model"] = name
    graph.add_node("input", node=BlockNode(name="input", kind="input", stage="stem", module_type="input",
                                           out_channels=in_channels, steps=(0,), output_step=0))
    prev = "input"
    for step in program.steps[1:]:
        mod = model if step.unit == WHOLE else model.get_submodule(step.unit)
        kind = next((k for t, k in _KINDS if isinstance(mod, t)), "module")
        notes = (("TorchScript: the modules inside cannot be hooked, so the model is one node, without"
                  " branch detail",) if step.unit == WHOLE else ("data flow unknown: drawn in call order",))
        node = BlockNode(name=step.unit, kind=kind, stage="body", module_type=type(mod).__name__,
                         params=sum(p.numel() for p in mod.parameters()), steps=(step.index,),
                         output_step=step.index, notes=notes)
        graph.add_node(step.unit, node=node)
        graph.add_edge(prev, step.unit)
        prev = step.unit
    total = sum(p.numel() for p in model.parameters())
    bg = BlockGraph(name, graph, program, model=model, native_size=tuple(native_size), total_params=total,
                    training_only_params=0, in_channels=in_channels)
    bg.dataflow_reason = reason
    return bg
