"""Factorised convolutions: what replacing an n×n kernel saves, and where each model uses which.

Szegedy et al. (2015, "Rethinking the Inception Architecture", section 3) replace a 5×5 convolution
by two stacked 3×3 (28 % fewer weights at equal width) and an n×n one by 1×n followed by n×1
(for 3×3: 33 %). Counts here are computed for the channels and input size given, at "same" padding
and stride 1, without biases — the same convention as the shape trace's multiply-adds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from explorer.core.text import fmt_branch, fmt_kernel

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph, BlockNode, BranchSpec


@dataclass(frozen=True)
class Factorisation:
    """An n×n convolution against a sequence of smaller ones, with equal input and output width."""

    name: str
    original: tuple[tuple[int, int], ...]
    replacement: tuple[tuple[int, int], ...]
    params_original: int
    params_replacement: int
    macs_original: int
    macs_replacement: int

    @property
    def saving(self) -> float:
        """Fraction of the weights (and multiply-adds) the replacement saves."""
        return 1 - self.params_replacement / self.params_original


def _chain(kernels, cin: int, cout: int, size: tuple[int, int]) -> tuple[int, int]:
    """Params and multiply-adds of convolutions applied one after the other (first cin→cout, then cout→cout)."""
    params = macs = 0
    c = cin
    for kh, kw in kernels:
        p = kh * kw * c * cout
        params += p
        macs += p * size[0] * size[1]
        c = cout
    return params, macs


def factorisations(cin: int, cout: int, size: tuple[int, int], n: int = 7) -> list[Factorisation]:
    """5×5 vs 3×3+3×3, 3×3 vs 3×1+1×3 and n×n vs 1×n+n×1 for these channels and this input size."""
    cases = [
        ("5×5 → two 3×3", ((5, 5),), ((3, 3), (3, 3))),
        ("3×3 → 3×1 + 1×3", ((3, 3),), ((3, 1), (1, 3))),
        (f"{n}×{n} → 1×{n} + {n}×1", ((n, n),), ((1, n), (n, 1))),
    ]
    out = []
    for name, orig, repl in cases:
        po, mo = _chain(orig, cin, cout, size)
        pr, mr = _chain(repl, cin, cout, size)
        out.append(Factorisation(name, orig, repl, po, pr, mo, mr))
    return out


def kernel_usage(graph) -> dict[str, Counter]:
    """For each block of a block graph, how many convolutions of each kernel shape its branches hold."""
    usage: dict[str, Counter] = {}
    for node in graph.blocks():
        usage[node.name] = Counter(layer.kernel for b in node.branches for layer in b.all_layers()
                                   if layer.type == "conv" and layer.kernel)
    return usage


#: What `applied_factorisations` names: two stacked 3×3 (for a 5×5), 1×n then n×1, 1×n beside n×1,
#: and a 5×5 left whole. The first three are `FAMILIES`' keys.
STACKED, SEQUENTIAL, SIDE_BY_SIDE, UNFACTORISED = "stacked", "sequential", "side by side", "unfactorised"


@dataclass(frozen=True)
class AppliedFactorisation:
    """One way a block's branch replaces a larger kernel (or keeps a 5×5), read from its layers."""

    family: str  # STACKED, SEQUENTIAL, SIDE_BY_SIDE or UNFACTORISED
    n: int  # the n×n kernel it stands for
    branch_index: int  # 0-based, in concatenation order (people read fmt_branch: 'branch 2')

    @property
    def label(self) -> str:
        n = self.n
        if self.family == STACKED:
            return "5×5 → two 3×3"
        if self.family == SEQUENTIAL:
            return f"{n}×{n} → {n}×1 + 1×{n}" if n == 3 else f"{n}×{n} → 1×{n} + {n}×1"
        if self.family == SIDE_BY_SIDE:
            return f"{n}×{n} → 1×{n} ‖ {n}×1"
        return f"{n}×{n} (not factorised)"


def _branch_applied(branch: BranchSpec, index: int) -> list[AppliedFactorisation]:
    out: list[AppliedFactorisation] = []
    for chain in (list(branch.layers), list(branch.tail)):
        convs = [l.kernel for l in chain if l.type == "conv" and l.kernel]
        for k in convs:
            if k[0] == k[1] and k[0] >= 5:
                out.append(AppliedFactorisation(UNFACTORISED, k[0], index))
        for k1, k2 in zip(convs, convs[1:]):
            if k1 == k2 == (3, 3):
                out.append(AppliedFactorisation(STACKED, 5, index))
            elif k1[0] != k1[1] and min(k1) == 1 and k2 == k1[::-1]:
                out.append(AppliedFactorisation(SEQUENTIAL, max(k1), index))
    subs = [b.all_layers() for b in branch.parallel]
    kernels = [s[0].kernel for s in subs if len(s) == 1 and s[0].type == "conv" and s[0].kernel]
    if len(kernels) == 2 and kernels[0][::-1] == kernels[1] and min(kernels[0]) == 1 and max(kernels[0]) > 1:
        out.append(AppliedFactorisation(SIDE_BY_SIDE, max(kernels[0]), index))
    for sub in branch.parallel:
        out += _branch_applied(sub, index)
    return out


def applied_factorisations(node: BlockNode) -> tuple[AppliedFactorisation, ...]:
    """Which factorisations a block's branches apply, each once per branch, in branch order."""
    seen: list[AppliedFactorisation] = []
    for i, b in enumerate(node.branches):
        for f in _branch_applied(b, i):
            if f not in seen:
                seen.append(f)
    return tuple(seen)


@dataclass(frozen=True)
class BranchConv:
    """A real convolution inside a block's branch, with what the factorisation table needs of it."""

    block: str
    branch_index: int  # 0-based (people read fmt_branch: 'branch 2')
    layer: str  # qualified module name
    kernel: tuple[int, int]
    in_channels: int
    out_channels: int
    map_size: tuple[int, int] | None  # its input feature map at the size asked for; None if too small

    @property
    def n(self) -> int:
        return max(self.kernel)

    def describe(self) -> str:
        k = fmt_kernel(self.kernel)
        where = f" at {fmt_kernel(self.map_size)}" if self.map_size else ""
        return f"{self.block} · {fmt_branch(self.branch_index)} · {k} conv {self.in_channels}→{self.out_channels}{where}"


def branch_convs(graph: BlockGraph, size: tuple[int, int] | None = None) -> list[BranchConv]:
    """Every convolution larger than 1×1 in the graph's blocks; channels from the layer itself,
    the feature-map size from the shape program at input `size` (the native size by default)."""
    from explorer.core.graph.program import StepFailed, TShape

    size = size or graph.native_size
    steps = {s.layer: s for s in graph.program.steps if s.kind == "conv"}
    try:
        vals, _ = graph.program.run((1, graph.in_channels, *size))
    except StepFailed:
        vals = None
    out = []
    for node in graph.blocks():
        if node.training_only:
            continue
        for i, b in enumerate(node.branches):
            for layer in b.all_layers():
                step = steps.get(layer.name)
                if layer.type != "conv" or not layer.kernel or layer.kernel == (1, 1) or step is None:
                    continue
                v = vals[step.inputs[0]] if vals is not None else None
                fmap = (int(v[2]), int(v[3])) if isinstance(v, TShape) and len(v) == 4 else None
                out.append(BranchConv(node.name, i, layer.name, layer.kernel, int(step.attrs["in_channels"]),
                                      layer.out_channels, fmap))
    return out
