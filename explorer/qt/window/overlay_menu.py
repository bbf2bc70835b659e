"""View → Overlay: colours the graph's boxes by the quantity in `state.overlay`, and "where does the time go".

The chosen quantity lives in the window's ExplorerState; this binding follows it (and the model, its
trace, the image on screen and the measured times) and hands the view its values and legend. Measuring
time per block is the session's job (explorer.core.session.timing), with progress in the status line; the
result is kept in `state.block_times` for the model, size and device it was measured at.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QDialog, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout

from explorer.core.overlay.quantities import (
    IMAGE,
    QUANTITIES,
    STATIC,
    attribution_overlay,
    image_overlay,
    knockout_overlay,
    static_overlay,
    where_time_goes,
)
from explorer.core.session import events as ev
from explorer.core.session.timing import LANE as TIMING
from explorer.core.text import fmt_fraction, fmt_seconds

#: Timed forwards after the untimed warm-up ones: enough for a median and a spread in about a second.
WARMUP, REPEATS = 1, 5
DEVICE = "cpu"
#: Above this many multiply-adds per forward (Inception v4 at 299 does 12.3 G), a new size is not timed by
#: itself: GoogLeNet at 2048 px took ~35 s of CPU on every size change. "Measure time at this size" does it.
AUTO_MACS = 20e9


class OverlayMenu(QObject):
    """The Overlay submenu of `window`'s View menu, bound to `window.state.overlay`."""

    def __init__(self, window, menu):
        super().__init__(window)
        self.window, self.state = window, window.state
        self.menu = menu.addMenu("&Overlay")
        self.group = QActionGroup(self)
        self.actions: dict[str, QAction] = {}
        for key, text in QUANTITIES.items():
            act = QAction(text, self, checkable=True)
            act.setData(key)
            act.triggered.connect(lambda _c=False, k=key: setattr(self.state, "overlay", k))
            self.group.addAction(act)
            self.menu.addAction(act)
            self.actions[key] = act
            if key == "receptive_field":
                self.menu.addSeparator()
        self.actions["none"].setChecked(True)
        self.menu.addSeparator()
        self.measure_action = self.menu.addAction("&Measure time at this size", self.measure)
        self.measure_action.setStatusTip("Time every block at the input size on screen (a large size takes a while)")
        self.cancel_action = self.menu.addAction("&Cancel timing", self.cancel)
        self.cancel_action.setEnabled(False)
        self.time_action = menu.addAction("&Where does the time go…", self.show_time_table)
        self.time_action.setStatusTip("Blocks ranked by measured time beside their share of multiply-adds")
        self.table: TimeTable | None = None
        self._hint_text: str | None = None  # the status line's hint of what the chosen quantity needs
        st, self.session = self.state, window.session
        self.session.on(ev.JobProgress, self._on_progress)
        self.session.on(ev.JobEnded, self._on_end)
        st.connect("problem", self._on_problem)
        st.connect("overlay", self._on_overlay)
        for name in ("trace", "graph", "loaded", "shown_image", "block_times", "branch_evidence", "knockouts"):
            st.connect(name, lambda _v: self.refresh())

    def _on_overlay(self, key: str) -> None:
        self.actions.get(key, self.actions["none"]).setChecked(True)
        if key != "time":
            self.cancel()
        self.refresh()

    def cancel(self) -> None:
        if self.session.timing.cancel():
            self.window.show_status("timing cancelled", 4000, topic="overlay")
        self.cancel_action.setEnabled(False)

    # -- values ------------------------------------------------------------------------------

    def device(self) -> str:
        """The device images are classified on (the classify panel's), else the CPU."""
        classifier = self.session.classifier
        device = str(getattr(classifier, "device", None) or DEVICE)
        return device if device == "cpu" or ":" in device else device + ":0"  # as torch names a tensor's

    def _wanted(self) -> tuple:
        st = self.state
        return getattr(st.graph, "name", None), st.input_size.hw, self.device()

    def _times_fit(self) -> bool:
        """Whether `state.block_times` were measured for the model, input size and device on screen."""
        t = self.state.block_times
        return t is not None and (t.model, tuple(t.input_shape[-2:]), t.device) == self._wanted()

    def refresh(self) -> None:
        """Hand the view the chosen quantity's values (or start measuring them)."""
        st, view = self.state, self.window.view
        key, graph = st.overlay, st.graph
        overlay = None
        try:
            if key in STATIC and graph is not None and st.trace is not None:
                overlay = static_overlay(key, graph, st.trace)
            elif key in IMAGE:
                shown = st.shown_image
                cap = getattr(shown, "capture", None)
                if cap is not None and graph is not None and cap.graph_name == graph.name:
                    overlay = image_overlay(key, cap)
                else:
                    self._hint("classify an image to colour the graph by its activations", 6000)
            elif key == "attribution":
                ev = st.branch_evidence
                if ev is not None and graph is not None and ev.model == graph.name:
                    overlay = attribution_overlay(ev, self._categories())
                else:
                    self._hint("compute the branch shares of the image on screen (Branch shares tab) "
                               "to colour the graph by attribution", 8000)
            elif key == "knockout":
                effects = st.knockouts
                if effects is not None and graph is not None and effects.effects:
                    overlay = knockout_overlay(effects, self._categories())
                else:
                    self._hint("knock out every branch of the image on screen (Branch shares tab → Knock out "
                               "each) to colour the graph by what each block's branches do", 8000)
            elif key == "time":
                if self._times_fit():
                    overlay = st.block_times.overlay()
                elif st.trace is None or st.trace.total_macs <= AUTO_MACS or self.state.block_times is None:
                    self.measure()
                else:  # a large size: timed when asked, not on every size change
                    self._hint(f"timing {st.input_size.text()} takes a while: View → Overlay → Measure time at "
                               "this size", 0)
        except Exception as e:  # a model the overlay cannot read must not take the window down
            self.window.show_status(f"overlay: {e}", 10000, topic="overlay")
        if overlay is not None or key == "none":
            self._clear_hint()
        view.set_overlay(None if overlay is None else overlay.values, None if overlay is None else overlay.legend)
        if self.table is not None:
            self.table.refresh()

    def _categories(self) -> list[str] | None:
        """The loaded model's class names, for the legends' words."""
        loaded = self.state.loaded
        return loaded.categories if loaded is not None else None

    def _hint(self, text: str, msecs: int) -> None:
        """Say in the status line what the chosen quantity still needs (taken away once it is shown)."""
        self._hint_text = text
        self.window.show_status(text, msecs, topic="overlay")

    def _clear_hint(self) -> None:
        """The overlay is on screen (or none is wanted): a hint saying how to get it would now be wrong."""
        line = self.window.status_line
        if self._hint_text is not None and line.topic == "overlay" and line.text() == self._hint_text:
            line.clear("overlay")
        self._hint_text = None

    def measure(self) -> None:
        """Time every block of the loaded model at the input size, through the session (unless it is timing
        that already); progress in the status line."""
        why = self.session.timing.why_not()
        if why is not None:
            self.window.show_status(why, 8000, topic="overlay")
            return
        device = self.device()
        if not self.session.timing.measure(device, warmup=WARMUP, repeats=REPEATS):
            return
        self.cancel_action.setEnabled(True)
        self.window.show_status(f"timing the blocks of {self.state.graph.name} on the {device.upper()}… (View →"
                                " Overlay → Cancel timing)", 0, topic="overlay")

    def _on_progress(self, event: ev.JobProgress) -> None:
        if event.lane == TIMING:
            self.window.show_status(f"timing the blocks of {self.state.graph.name}: forward {event.done} of"
                                    f" {event.total}…", 0, topic="overlay")

    def _on_end(self, event: ev.JobEnded) -> None:
        if event.lane != TIMING:
            return
        self.cancel_action.setEnabled(False)
        if event.outcome == "done":
            self.window.status_line.clear("overlay")

    def _on_problem(self, problem) -> None:
        if problem is not None and problem.topic == "timing":
            self.window.show_error(f"timing failed: {problem.message}")

    def show_time_table(self) -> "TimeTable":
        """The "where does the time go" table; measures first when the times are missing."""
        if self.table is None:
            self.table = TimeTable(self, self.window)
        if not self._times_fit():
            self.measure()
        self.table.refresh()
        self.table.show()
        self.table.raise_()
        return self.table


class TimeTable(QDialog):
    """Blocks ranked by measured time beside their share of the multiply-adds: the two disagree."""

    COLUMNS = ("Node", "Time (median)", "Spread (IQR)", "Share of time", "Share of mult-adds")

    def __init__(self, binding: OverlayMenu, parent=None):
        super().__init__(parent)
        self.binding = binding
        self.setWindowTitle("Where does the time go")
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, len(self.COLUMNS), self)
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        lay = QVBoxLayout(self)
        lay.addWidget(self.note)
        lay.addWidget(self.table, 1)
        self.resize(620, 560)

    def rows(self) -> list:
        st = self.binding.state
        if not self.binding._times_fit():
            return []
        return where_time_goes(st.block_times, st.trace)

    def refresh(self) -> None:
        st = self.binding.state
        rows = self.rows()
        self.table.setRowCount(len(rows))
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for i, r in enumerate(rows):
            cells = (r.node, fmt_seconds(r.seconds), fmt_seconds(r.spread), fmt_fraction(r.time_share),
                     fmt_fraction(r.macs_share))
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j:
                    item.setTextAlignment(right)
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        if rows:
            t = st.block_times
            h, w = t.input_shape[-2:]
            self.note.setText(f"{t.model} at {h}×{w} on the {t.device.upper()}: median of {t.repeats} forwards "
                              f"after {t.warmup} warm-up, total {fmt_seconds(sum(r.seconds for r in rows))}. "
                              "Multiply-adds predict time only roughly: memory traffic, pooling and "
                              "concatenation cost time without multiply-adds.")
        else:
            self.note.setText("Measuring the time of every block…" if self.binding.session.runner.running(TIMING)
                              else "No times yet: they are measured once the model has loaded.")
