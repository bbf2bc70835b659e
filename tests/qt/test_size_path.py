"""A size typed in the window reaches the redrawn graph through at most five files (the house issue), once.

The path is read off the call stack where the work is done: when the shapes are traced (`trace_shapes`), laid
out (`layout_diagram`) and handed to the view (`GraphView.set_diagram`). Listeners that run beside it (the
overlay, the paper table, the saved settings) are not on it; the engine's trace itself is one step."""

import traceback

import explorer.core.session.session as session_module
import explorer.qt.window.graph_page as graph_page_module
from explorer.qt.graph.graph_view import GraphView

PATH = {"qt/window/graph_page.py", "core/session/state.py", "core/session/session.py", "diagram/layout.py",
        "qt/graph/graph_view.py"}


def _files_on_stack() -> list[str]:
    return [f.filename.split("/explorer/")[1] for f in traceback.extract_stack() if "/explorer/" in f.filename]


def test_a_typed_size_reaches_the_redrawn_graph_through_five_files(make_window, qtbot, monkeypatch):
    import explorer.core.shapes.trace as trace_module
    import explorer.diagram.layout as layout_module

    w = make_window()
    seen: dict[str, list[list[str]]] = {"trace": [], "layout": [], "draw": []}

    def spy(kind, fn, own):
        def call(*args, **kwargs):
            seen[kind].append(_files_on_stack() + [own])
            return fn(*args, **kwargs)
        return call

    monkeypatch.setattr(trace_module, "trace_shapes",
                        spy("trace", trace_module.trace_shapes, "core/shapes/trace.py"))
    monkeypatch.setattr(graph_page_module, "layout_diagram",
                        spy("layout", layout_module.layout_diagram, "diagram/layout.py"))
    monkeypatch.setattr(GraphView, "set_diagram", spy("draw", GraphView.set_diagram, "qt/graph/graph_view.py"))
    assert session_module is not None  # the session imports trace_shapes where it traces, so the spy is seen

    box = w.graph_page.size_control.height_box
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, "200")  # "2", "20", "200": each a size the boxes take
    qtbot.wait(50)
    assert w.state.input_size.hw == (200, 200) and w.state.trace.input_shape[2:] == (200, 200)
    # Every keystroke traced once, laid out once and drawn once: no second redraw of one edit.
    assert len(seen["trace"]) == len(seen["layout"]) == len(seen["draw"]) == 3
    files = {f for stacks in seen.values() for stack in stacks for f in stack}
    engine = {"core/shapes/trace.py"}  # the engine's computation, one step of the path
    assert files - engine == PATH, files
    assert len(PATH) <= 5
