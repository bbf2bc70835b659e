"""The session's comparisons, without Qt: two models' block graphs side by side at one input size (the Compare
window), in the lane "compare/compare".

A comparison is for what was asked last (the two references and the size): one that arrives after another was
asked is dropped. Its problem is about "compare".
"""

from __future__ import annotations

from explorer.core.session import events as ev

LANE = "compare/compare"


def _compare(name_a: str, name_b: str, size: tuple[int, int], *, progress=None, cancel=None):
    """Both block graphs (built once per process) and their comparison."""
    from explorer.core.model.graphs import block_graph
    from explorer.core.shapes.compare import compare_models

    graph_a, graph_b = block_graph(name_a), block_graph(name_b)
    return ev.Compared((name_a, name_b), tuple(size), (graph_a, graph_b), compare_models(graph_a, graph_b, size))


class Comparisons:
    """Compares two models at an input size (see the module docstring)."""

    def __init__(self, session):
        self.session = session
        self.asked: tuple | None = None  #: (model A, model B, (h, w)) of the last request

    def compare(self, name_a: str, name_b: str, size: tuple[int, int]) -> None:
        """Compare `name_a` and `name_b` (zoo names or references) at `size` on a worker; Compared follows,
        unless another comparison was asked meanwhile."""
        asked = self.asked = (name_a, name_b, tuple(size))

        def apply(event: ev.Compared) -> None:
            if (*event.names, event.size) == self.asked == asked:
                self.session.tell(event)

        self.session.submit(LANE, _compare, name_a, name_b, tuple(size), apply=apply, topic="compare", bound=None)

    def cancel(self) -> bool:
        return self.session.runner.cancel(LANE)
