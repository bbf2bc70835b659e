"""The session's block timing, without Qt: every block of the model on screen timed at the input size (the
graph's time overlay and "where does the time go"), in the lane "model/overlay".

The times are for the model and weights on screen when the job started: they reach `state.block_times` only
while those hold and the graph is still that model's. A new request (another size or device) cancels the
running one.
"""

from __future__ import annotations

from explorer.core.session import events as ev

LANE = "model/overlay"
#: Forwards before timing, and timed forwards per block.
WARMUP, REPEATS = 1, 5


def _time_blocks(module, graph, size, device, *, warmup, repeats, progress=None, cancel=None):
    from explorer.core.overlay.quantities import timing_task

    return ev.BlocksTimed(timing_task(module, graph, size, device, warmup=warmup, repeats=repeats, progress=progress,
                                      cancel=cancel))


class BlockTiming:
    """Times the blocks of the model on screen (see the module docstring)."""

    def __init__(self, session):
        self.session = session
        self.measuring: tuple | None = None  #: (model, size, device) being timed, while a job runs

    def why_not(self) -> str | None:
        """Why the blocks cannot be timed now, for people (None: they can)."""
        st = self.session.state
        if st.loaded is None or st.graph is None or getattr(st.graph, "is_preview", False):
            return "timing starts once the model has loaded"
        if st.trace_error is not None:
            return "timing waits for an input size that fits the network"
        if getattr(st.graph, "dataflow_reason", None) is not None:
            return "timing needs a model whose forward torch.fx can trace"
        return None

    def measure(self, device: str = "cpu", *, warmup: int = WARMUP, repeats: int = REPEATS) -> bool:
        """Time every block at the state's input size on `device`, unless the same is being timed; whether a job
        runs for it. JobProgress and JobEnded (lane "model/overlay") tell how it goes."""
        st = self.session.state
        if self.why_not() is not None:
            return False
        wanted = (st.graph.name, st.input_size.hw, device)
        if self.measuring == wanted and self.session.runner.running(LANE) is not None:
            return True
        self.measuring = wanted
        graph = st.graph

        def apply(event) -> None:
            if isinstance(event, ev.Progress):
                self.session.tell(ev.JobProgress(LANE, event.done, event.total))
            elif st.graph is not None and st.graph.name == event.times.model:
                st.block_times = event.times
                self.session.tell(event)

        def end(_outcome: str) -> None:
            self.measuring = None

        self.session.submit(LANE, _time_blocks, st.loaded.module, graph, st.input_size.hw, device, warmup=warmup,
                            repeats=repeats, apply=apply, topic="timing", bound="model", wants_progress=True,
                            on_end=end)
        return True

    def cancel(self) -> bool:
        """Stop timing; whether a job was running."""
        return self.session.runner.cancel(LANE)
