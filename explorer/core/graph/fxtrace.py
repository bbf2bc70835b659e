"""torch.fx tracing that leaves the other threads alone.

While `torch.fx.symbolic_trace` runs, it replaces `nn.Module.__call__` and `__getattr__` for the whole
process; a forward on another thread at that moment (an image being classified while a model's graph
is built) is routed into the tracer and fails ("module is not installed as a submodule"). The tracer
here hands every call made on another thread straight to the real module, and traces never overlap
(each one patches and restores the same class attributes).
"""

from __future__ import annotations

import threading

import torch.nn as nn
from torch import fx

#: Held by every trace (and by other process-wide patching, e.g. loading a torch.export file).
TRACE_LOCK = threading.RLock()


class ThreadAwareTracer(fx.Tracer):
    """An fx tracer that records only the calls made on the thread that traces."""

    def trace(self, root, concrete_args=None) -> fx.Graph:
        self._owner = threading.get_ident()
        return super().trace(root, concrete_args)

    def _foreign(self) -> bool:
        return threading.get_ident() != getattr(self, "_owner", None)

    def call_module(self, m: nn.Module, forward, args, kwargs):
        if self._foreign():
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val, parameter_proxy_cache):
        if self._foreign():
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


def symbolic_trace(root: nn.Module) -> fx.GraphModule:
    """`torch.fx.symbolic_trace(root)`, safe beside forwards on other threads."""
    with TRACE_LOCK:
        tracer = ThreadAwareTracer()
        graph = tracer.trace(root)
        return fx.GraphModule(tracer.root, graph, root.__class__.__name__)
