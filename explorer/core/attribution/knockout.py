"""Branch knock-outs: a branch's output replaced, where its block joins it, by zeros or by its per-channel mean.

A knock-out happens at the join: the traced node that concatenates (or adds) a block's branches reads each
branch through its probe (`CaptureModel`), and only that one reading is replaced. The branch's tensor is
exactly what the block concatenates, an Inception v3 branch that is itself a concatenation (1×3 ‖ 3×1)
included, and a residual block's shortcut, which is also the previous block's output, is knocked out in
the addition without touching the residual path that reads the same tensor. "mean" ablation keeps each
channel's mean over the image (the block's statistics), "zero" removes the branch.

`branch_effects` knocks out every branch on its own in one pass that shares the work: one plain forward
keeps every activation; then a single walk over the rest of the graph carries a batch whose rows are the
knock-outs. A block's join adds one row per branch (the block's inputs from the plain forward, one branch
replaced), so nothing before a block is recomputed for its knock-outs, and the rows of every block travel
through the rest of the network together: 36 knock-outs of GoogLeNet take one walk in batches of 4 to 36,
not 36 walks. A node that no knock-out has reached yet keeps its plain value.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import fx

from explorer.core.graph.capture import CaptureModel

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph

#: What a knocked-out branch becomes: zeros, or each channel's mean over the image (per image).
MODES = ("zero", "mean")

#: (block, branch_index): one branch of one block, 0-based as everywhere in the code.
Branch = tuple[str, int]

#: Layers that compute otherwise in training: in it, a batch norm would mix the knock-outs' rows.
_TRAINING_DEPENDENT = (torch.nn.modules.batchnorm._NormBase, torch.nn.modules.dropout._DropoutNd)

_IN_PLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}

#: The names of the switch modules `BranchSwitches` puts between a branch and its block's join.
SWITCH_PREFIX = "switch__"


def replacement(t: torch.Tensor, mode: str) -> torch.Tensor:
    """What branch output `t` (N, C, …) becomes when knocked out: zeros, or per image and channel its mean
    over the remaining (spatial) dimensions."""
    if mode == "zero":
        return torch.zeros_like(t)
    if mode == "mean":
        if t.dim() <= 2:  # no spatial extent: a channel's mean over the image is the value itself
            return t
        return t.mean(dim=tuple(range(2, t.dim())), keepdim=True).expand_as(t)
    raise ValueError(f"unknown knock-out mode {mode!r}; one of {', '.join(MODES)}")


def _reading(join: fx.Node, probe: fx.Node | None) -> fx.Node | None:
    """The node through which `join` reads `probe`: the probe itself, or the branch's switch where `BranchSwitches`
    are installed; None when the join does not read it."""
    if probe is None:
        return None
    for a in join.all_input_nodes:
        if a is probe or (a.op == "call_module" and a.target.startswith(SWITCH_PREFIX) and a.args[0] is probe):
            return a
    return None


def _writes_in_place(n: fx.Node, gm: fx.GraphModule) -> bool:
    if n.op == "call_module":
        return getattr(gm.get_submodule(n.target), "inplace", False) is True
    if n.op == "call_method":
        return n.target.endswith("_") and not n.target.endswith("__")
    if n.op == "call_function":
        return (n.kwargs.get("inplace") is True or n.target in _IN_PLACE_FUNCTIONS
                or getattr(n.target, "__name__", "").endswith("_"))
    return False


@dataclass(frozen=True)
class BranchEffect:
    """One branch knocked out on its own: the target's logit and probability, and the top-1, then."""

    block: str
    branch_index: int
    logit: float
    prob: float
    delta_logit: float  #: logit with the branch off − the plain logit
    delta_prob: float  #: probability with the branch off − the plain probability
    top1: int  #: the class the network then puts first
    top1_changed: bool


@dataclass
class BranchEffects:
    """Every knock-out of one image, with the plain network's target logit, probability and top-1."""

    target: int
    mode: str
    logit: float
    prob: float
    top1: int
    effects: list[BranchEffect] = field(default_factory=list)


class KnockoutNetwork:
    """A capture network run node by node, with branches knocked out where their blocks join them.

    The network must be in eval mode (a batch norm in training would mix the knock-outs' rows)."""

    def __init__(self, capture: CaptureModel):
        self.capture = capture
        gm = self.gm = capture.gm
        self.nodes = list(gm.graph.nodes)
        self._run_node = fx.Interpreter(gm, garbage_collect_values=False)
        by_name = {n.name: n for n in self.nodes}
        probe_node = {n.target: n for n in self.nodes if n.op == "call_module" and n.target in capture.probes}
        #: block -> its join node; (block, branch_index) -> the probe node the join reads that branch through
        self.joins: dict[str, fx.Node] = {}
        self.probes: dict[Branch, fx.Node] = {}
        for block, count in capture.block_branches.items():
            join = by_name.get(capture.join_nodes.get(block, ""))
            if join is None:
                continue
            self.joins[block] = join
            for k in range(count):
                p = _reading(join, probe_node.get(capture.probe_of.get((block, k), "")))
                if p is not None:
                    self.probes[(block, k)] = p
        order = {n: i for i, n in enumerate(self.nodes)}
        self._order = order
        # Values with the image's batch dimension: everything computed from the input (not parameters).
        self._batched: set[fx.Node] = set()
        for n in self.nodes:
            if n.op == "placeholder" or any(a in self._batched for a in n.all_input_nodes):
                self._batched.add(n)
        self._in_place = {n for n in self.nodes if _writes_in_place(n, gm)}
        # A tensor overwritten in place while another node still reads it: the plain forward's values would
        # not be what each later node saw, so the shared pass refuses (no torchvision CNN does this).
        self.shared_pass_problem = next(
            (f"{n.name} overwrites {n.args[0].name}, which {len(n.args[0].users) - 1} other node(s) read"
             for n in self._in_place if n.args and isinstance(n.args[0], fx.Node) and len(n.args[0].users) > 1),
            None)

    @classmethod
    def of(cls, model: torch.nn.Module | CaptureModel | KnockoutNetwork, graph: BlockGraph | None = None
           ) -> KnockoutNetwork:
        """The knock-out network of a model (traced with `graph`'s probes), a capture network or itself."""
        if isinstance(model, KnockoutNetwork):
            return model
        if not isinstance(model, CaptureModel):
            if graph is None:
                raise ValueError("a plain network needs its block graph to be probed")
            model = CaptureModel(model, graph)
        return cls(model)

    def branches(self, blocks: Iterable[str] | None = None) -> list[Branch]:
        """Every (block, branch_index) that can be knocked out, in data-flow and concatenation order."""
        chosen = None if blocks is None else set(blocks)
        return [b for b in self.probes if chosen is None or b[0] in chosen]

    def _check(self, branches: Iterable[Branch], mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown knock-out mode {mode!r}; one of {', '.join(MODES)}")
        for b in branches:
            if b not in self.probes:
                block, k = b
                raise KeyError(f"{block} branch_index {k} cannot be knocked out (not a branch of a block)")
        if any(m.training for m in self.gm.modules() if isinstance(m, _TRAINING_DEPENDENT)):
            raise RuntimeError("knock-outs need the network in eval mode")

    def _call(self, n: fx.Node, args, kwargs):
        return getattr(self._run_node, n.op)(n.target, args, kwargs)

    @torch.no_grad()
    def knock_out(self, x: torch.Tensor, branches: Iterable[Branch], mode: str = "zero") -> torch.Tensor:
        """The network's output for batch `x` with every one of `branches` knocked out (in every image)."""
        branches = list(branches)
        self._check(branches, mode)
        replaced: dict[fx.Node, set[fx.Node]] = {}
        for b in branches:
            replaced.setdefault(self.joins[b[0]], set()).add(self.probes[b])
        env: dict[fx.Node, Any] = {}
        last_use = self._last_uses(self.nodes)
        for n in self.nodes:
            if n.op == "placeholder":
                env[n] = x
                continue
            if n.op == "output":
                return fx.node.map_arg(n.args[0], env.__getitem__)
            off = replaced.get(n, ())
            args, kwargs = fx.node.map_arg((n.args, n.kwargs),
                                           lambda a: replacement(env[a], mode) if a in off else env[a])
            env[n] = self._call(n, args, kwargs)
            for a in n.all_input_nodes:
                if last_use.get(a) is n:
                    del env[a]
        raise RuntimeError("the traced graph has no output")

    @staticmethod
    def _last_uses(nodes: Sequence[fx.Node]) -> dict[fx.Node, fx.Node]:
        last: dict[fx.Node, fx.Node] = {}
        for n in nodes:
            for a in n.all_input_nodes:
                last[a] = n
        return last

    def _plain_forward(self, x: torch.Tensor) -> tuple[dict[fx.Node, Any], Any]:
        """(every node's value, the output) of the plain network for `x`."""
        base: dict[fx.Node, Any] = {}
        for n in self.nodes:
            if n.op == "placeholder":
                base[n] = x
            elif n.op == "output":
                return base, fx.node.map_arg(n.args[0], base.__getitem__)
            else:
                args, kwargs = fx.node.map_arg((n.args, n.kwargs), base.__getitem__)
                base[n] = self._call(n, args, kwargs)
        raise RuntimeError("the traced graph has no output")

    @torch.no_grad()
    def knock_out_each(self, x: torch.Tensor, branches: Sequence[Branch], mode: str = "zero"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the plain output (1, …), the outputs with each of `branches` knocked out on its own (K, …)) for one
        image `x` (1, C, H, W), in one shared pass (see the module)."""
        branches = list(branches)
        self._check(branches, mode)
        if x.dim() != 4 or x.shape[0] != 1:
            raise ValueError(f"one image (1, C, H, W) is knocked out at a time, not {tuple(x.shape)}")
        if self.shared_pass_problem:
            raise RuntimeError(f"the knock-outs cannot share the plain forward: {self.shared_pass_problem}")
        base, plain = self._plain_forward(x)
        if not branches:
            return plain, plain[:0]

        # The rows each join adds: (row id, the probe replaced in it).
        new_rows: dict[fx.Node, list[tuple[int, fx.Node]]] = {}
        for i, b in enumerate(branches):
            new_rows.setdefault(self.joins[b[0]], []).append((i, self.probes[b]))
        first = min(self._order[j] for j in new_rows)
        rest = self.nodes[first:]
        last_use = self._last_uses(rest)
        rows: dict[fx.Node, tuple[int, ...]] = {}  # the knock-outs (row ids, ascending) a value carries
        vals: dict[fx.Node, Any] = {}  # its value, one batch row per knock-out in `rows`

        def aligned(a: fx.Node, want: tuple[int, ...]):
            """`a`'s value with one row per id in `want` (the plain value where `a` does not carry the id)."""
            have = rows.get(a, ())
            if have == want:
                return vals[a] if have else base[a]
            plain_a = base[a]
            if a not in self._batched or not isinstance(plain_a, torch.Tensor):
                return vals.get(a, plain_a)
            if not have:
                return like(plain_a.expand(len(want), *plain_a.shape[1:]), plain_a)
            pos = {r: i for i, r in enumerate(have)}
            index = torch.tensor([pos.get(r, len(have)) for r in want], device=plain_a.device)
            return like(torch.cat([vals[a], plain_a]).index_select(0, index), plain_a)

        for n in rest:
            if n.op == "output":
                want = tuple(range(len(branches)))
                out = fx.node.map_arg(n.args[0], lambda a: aligned(a, want))
                return plain, out
            if n.op in ("placeholder", "get_attr"):
                continue
            carried = sorted({r for a in n.all_input_nodes for r in rows.get(a, ())})
            added = new_rows.get(n, [])
            if not carried and not added:
                continue
            union = tuple(carried)
            have_in_place = n in self._in_place

            def value(a: fx.Node, union=union, added=added):
                t = aligned(a, union)
                if added and a in self._batched and isinstance(base[a], torch.Tensor):
                    p = base[a]
                    extra = p.repeat(len(added), *([1] * (p.dim() - 1)))
                    for row, (_, probe) in enumerate(added):
                        if probe is a:
                            extra[row] = replacement(p, mode)[0]
                    t = like(torch.cat([t, extra]) if union else extra, p)
                return t

            args, kwargs = fx.node.map_arg((n.args, n.kwargs), value)
            if have_in_place and args and isinstance(args[0], torch.Tensor):
                a0 = n.args[0]
                if not (isinstance(a0, fx.Node) and rows.get(a0) == union and not added):
                    args = (args[0].clone(), *args[1:])  # never write into the plain forward's values
            vals[n] = self._call(n, args, kwargs)
            rows[n] = union + tuple(r for r, _ in added)
            for a in n.all_input_nodes:
                if last_use.get(a) is n:
                    vals.pop(a, None)
        raise RuntimeError("the traced graph has no output")

    def effects(self, x: torch.Tensor, target: int | None = None, mode: str = "zero",
                branches: Sequence[Branch] | None = None) -> BranchEffects:
        """Each of `branches` (default: all) knocked out on its own for one image: see `branch_effects`."""
        branches = self.branches() if branches is None else list(branches)
        plain, knocked = self.knock_out_each(x, branches, mode)
        if not isinstance(plain, torch.Tensor) or plain.dim() != 2:
            raise ValueError("the network's output is not a vector of class scores")
        plain, knocked = plain.float(), knocked.float()
        top1 = int(plain[0].argmax())
        target = top1 if target is None else int(target)
        if not 0 <= target < plain.shape[1]:
            raise ValueError(f"target {target}: the network has {plain.shape[1]} classes (0 to {plain.shape[1] - 1})")
        p0 = torch.softmax(plain, 1)[0, target].item()
        l0 = plain[0, target].item()
        probs = torch.softmax(knocked, 1)[:, target].tolist()
        logits = knocked[:, target].tolist()
        tops = knocked.argmax(1).tolist() if len(branches) else []
        result = BranchEffects(target=target, mode=mode, logit=l0, prob=p0, top1=top1)
        for (block, k), lg, pr, t in zip(branches, logits, probs, tops):
            result.effects.append(BranchEffect(block=block, branch_index=k, logit=lg, prob=pr, delta_logit=lg - l0,
                                               delta_prob=pr - p0, top1=int(t), top1_changed=int(t) != top1))
        return result


def like(t: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    """Batch `t` in the memory format of the plain value `plain` it was made from: channels-last where the network
    runs channels-last (the classifier's copy). Repeated, expanded or gathered rows come out channels-first, and a
    channels-first max pool took 3.5 to 15 times as long (GoogLeNet's knock-outs: half the shared pass's time)."""
    if (t.dim() == 4 and plain.dim() == 4 and not plain.is_contiguous()
            and plain.is_contiguous(memory_format=torch.channels_last)
            and not t.is_contiguous(memory_format=torch.channels_last)):
        return t.contiguous(memory_format=torch.channels_last)
    return t


def knock_out(model, graph: BlockGraph | None, x: torch.Tensor, branches: Iterable[Branch],
              mode: str = "zero") -> torch.Tensor:
    """The output of `model` (a network with its block graph, or a CaptureModel / KnockoutNetwork) for batch `x`
    with `branches` ((block, branch_index) pairs) knocked out together, `mode` "zero" or "mean"."""
    return KnockoutNetwork.of(model, graph).knock_out(x, branches, mode)


def branch_effects(model, graph: BlockGraph | None, x: torch.Tensor, target: int | None = None,
                   mode: str = "zero", branches: Sequence[Branch] | None = None) -> BranchEffects:
    """Every branch of every block (or `branches`) knocked out on its own, for one image `x` (1, C, H, W): the
    change in the target's logit and probability (target: default the plain top-1) and the new top-1."""
    return KnockoutNetwork.of(model, graph).effects(x, target, mode, branches)


class _Switch(torch.nn.Module):
    """Between one branch and its block's join: the branch as it is, or, while it is switched off, `replacement`."""

    def __init__(self, switches: BranchSwitches, branch: Branch):
        super().__init__()
        self.switches, self.branch = switches, branch  # a plain object: no submodule

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        off, mode = self.switches.now()
        return replacement(t, mode) if self.branch in off else t


class BranchSwitches:
    """Branches switched off in a network for as long as a person wants (the window's "Switch branch off"):
    a switch between each branch and its block's join, installed once in a capture network (`install`), reads
    `now()` — (the switched-off (block, branch_index) pairs, the mode) — at every forward and replaces those
    branches where their blocks join them, as `KnockoutNetwork` does. Gradients flow through it (attributions),
    the capture keeps what the block joined, and `KnockoutNetwork` over a switched network knocks out on top
    of the branches already off. `now` must be a plain function (a deep copy of the network shares it)."""

    def __init__(self, now: Callable[[], tuple[Iterable[Branch], str]]):
        self.now = now

    @property
    def active(self) -> bool:
        """Whether any branch is off now."""
        return bool(self.now()[0])

    def install(self, capture: CaptureModel) -> CaptureModel:
        """Put a switch between each branch of `capture` and its block's join (once); returns `capture`."""
        if getattr(capture, "branch_switches", None) is not None:
            if capture.branch_switches is not self:
                raise ValueError("the network has switches of another owner")
            return capture
        net = KnockoutNetwork(capture)
        gm = capture.gm
        roles = Counter(capture.probe_of.values())
        for (block, k), probe in net.probes.items():
            join = net.joins[block]
            name = f"{SWITCH_PREFIX}{block.replace('.', '__')}__b{k}"
            switch = _Switch(self, (block, k))
            gm.add_submodule(name, switch)
            with gm.graph.inserting_before(join):
                node = gm.graph.call_module(name, (probe,))
            join.replace_input_with(probe, node)
            if probe.op == "call_module" and roles.get(probe.target) == 1:
                # The capture keeps what the block joined (zeros, the mean): the activations of the network run.
                switch.register_forward_hook(capture._keep(probe.target))
        gm.recompile()
        capture.branch_switches = self
        return capture
