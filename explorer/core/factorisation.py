"""Factorised convolutions: what replacing an n×n kernel saves, and where each model uses which.

Szegedy et al. (2015, "Rethinking the Inception Architecture", section 3) replace a 5×5 convolution
by two stacked 3×3 (28 % fewer weights at equal width) and an n×n one by 1×n followed by n×1
(for 3×3: 33 %). Counts here are computed for the channels and input size given, at "same" padding
and stride 1, without biases — the same convention as the shape trace's multiply-adds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


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
