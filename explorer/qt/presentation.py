"""Presentation mode: full screen, large type, high contrast; the arrow keys walk through the blocks.

Each step expands, highlights and centres the next Inception block (collapsing the previous one)
and writes a caption with the block's name, output shape and branch channels. Esc restores the
window as it was: its geometry, its docks' sizes and which of their tabs was raised.

What it reads of the window: graph, trace, expanded, view, caption, weights_bar, banner, notice,
chrome_widgets(), set_presentation_style(), redraw(), spec_title(), and its QDockWidget children.

Signals
-------
entered()            presentation mode started
left()               presentation mode ended
stepped(int, str)    index and name of the block now shown (-1, "" for the overview)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import QDockWidget

from explorer.core.text import fmt_shape

if TYPE_CHECKING:
    from explorer.qt.main_window import MainWindow

NEXT_KEYS = ("Right", "Space", "PgDown", "Down")
PREV_KEYS = ("Left", "Backspace", "PgUp", "Up")
#: The zoom of a block slide whose block fits the screen (block slides never zoom in further): the
#: overview is drawn at it too, so its text is as large as theirs, from the top of the network.
SLIDE_ZOOM = 1.0


def presentation_scale(screen_height: int) -> float:
    """Font scale for a screen of `screen_height` logical pixels: 720p projector → 1.5, 1080 → 2.0."""
    return max(1.5, min(3.0, 1.5 * screen_height / 720 * 0.9 + 0.15))


class Presentation(QObject):
    """Drives a MainWindow through its blocks; owns the keys that step while it is active."""

    entered = Signal()
    left = Signal()
    stepped = Signal(int, str)

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.active = False
        self.index = -1
        self._saved: dict = {}
        self._shortcuts: list[QShortcut] = []
        for keys, slot in ((NEXT_KEYS, self.next), (PREV_KEYS, self.previous), (("Esc",), self.leave),
                           (("Home",), self.first)):
            for k in keys:
                sc = QShortcut(QKeySequence(k), window)
                sc.setContext(Qt.ShortcutContext.WindowShortcut)
                sc.setEnabled(False)
                sc.activated.connect(slot)
                self._shortcuts.append(sc)

    def blocks(self) -> list[str]:
        """The Inception blocks in data-flow order (training-only heads left out)."""
        g = self.window.graph
        return [] if g is None else [n.name for n in g.blocks() if not n.training_only]

    def toggle(self) -> None:
        self.leave() if self.active else self.enter()

    def enter(self) -> None:
        w = self.window
        if self.active or w.graph is None:
            return
        self.active = True
        w.state.presenting = True
        w.show_graph_tab()  # the talk is the graph (its tab bar is chrome, hidden below)
        self._saved = dict(
            expanded=set(w.expanded), selected=w.view.selected_key(), full_screen=w.isFullScreen(),
            maximized=w.isMaximized(), transform=w.view.transform(),
            visible={bar: bar.isVisible() for bar in w.chrome_widgets()},
        )
        # saveState() holds the docks' sizes and tab order; which tab is raised is taken from the
        # screen, since showing the hidden docks again raises whichever comes last.
        self._saved.update(geometry=w.saveGeometry(), rect=w.geometry(), state=w.saveState(),
                           raised=[d for d in w.findChildren(QDockWidget)
                                   if d.isVisible() and not d.visibleRegion().isEmpty()])
        for bar in w.chrome_widgets():
            bar.hide()
        for strip in (w.weights_bar, w.banner, w.notice):  # messages arriving now wait until the talk is over
            strip.set_suppressed(True)
        screen = w.screen() or QGuiApplication.primaryScreen()
        height = screen.availableGeometry().height() if screen else 720
        w.set_presentation_style(presentation_scale(height))
        if screen is not None:
            w.setGeometry(screen.geometry())  # without a window manager, full screen alone may not resize
        w.showFullScreen()
        w.view.set_chrome(False)
        for sc in self._shortcuts:
            sc.setEnabled(True)
        w.caption.show()
        w.view.setFocus()
        self.index = -1
        w.expanded = ()
        w.redraw()
        self._show_overview()
        self.entered.emit()

    def leave(self) -> None:
        w = self.window
        if not self.active:
            return
        self.active = False
        w.state.presenting = False
        for sc in self._shortcuts:
            sc.setEnabled(False)
        w.caption.hide()
        w.view.set_chrome(True)
        w.view.set_highlighted(None)
        w.set_presentation_style(None)
        s = self._saved
        w.expanded = set(s["expanded"])
        w.redraw()
        for bar, vis in s["visible"].items():
            bar.setVisible(vis)
        for strip in (w.weights_bar, w.banner, w.notice):
            strip.set_suppressed(False)
        if s["maximized"] and not s["full_screen"]:
            w.showMaximized()
            w.restoreGeometry(s["geometry"])
        elif not s["full_screen"]:
            # The window's own rectangle: restoreGeometry() guesses the frame, and without a window
            # manager (Xvfb) the window came back 25 px lower each time.
            w.showNormal()
            w.setGeometry(s["rect"])
        w.restoreState(s["state"])
        for dock in s["raised"]:
            dock.raise_()
        w.view.setTransform(s["transform"])
        if s["selected"]:
            w.view.select(s["selected"])
        self.index = -1
        self.left.emit()

    def first(self) -> None:
        self.go(0)

    def next(self) -> None:
        self.go(self.index + 1)

    def previous(self) -> None:
        self.go(self.index - 1)

    def go(self, index: int) -> None:
        """Show block `index` (−1: the overview); out-of-range indices stop at the ends."""
        blocks = self.blocks()
        if not self.active or not blocks:
            return
        index = max(-1, min(len(blocks) - 1, index))
        self.index = index
        w = self.window
        if index < 0:
            w.expanded = ()
            w.redraw()
            self._show_overview()
            self.stepped.emit(-1, "")
            return
        name = blocks[index]
        w.expanded = {name}
        w.redraw(anchor=name)
        w.view.set_highlighted(name)
        rect = w.view.node_rect(name)
        if rect is not None:
            w.view.fit(rect.adjusted(-30, -30, 30, 30), max_zoom=SLIDE_ZOOM)
        w.caption.setText(self.caption_text(name))
        self.stepped.emit(index, name)

    def caption_text(self, name: str) -> str:
        w = self.window
        node = w.graph.node(name)
        ns = w.trace.nodes.get(name) if w.trace is not None else None
        shape = fmt_shape(ns.output_shape) if ns else "?"
        chans = " + ".join(str(b.out_channels) for b in node.branches)
        word = "concat" if node.merge == "cat" else "sum"
        total = node.out_channels if node.out_channels is not None else "?"
        n, count = self.blocks().index(name) + 1, len(self.blocks())
        return (f"<b>{name}</b> &nbsp;·&nbsp; output {shape} &nbsp;·&nbsp; {word} {chans} = {total}"
                f" &nbsp;<span style='color:#aaa'>({n}/{count})</span>")

    def _show_overview(self) -> None:
        w = self.window
        w.view.set_highlighted(None)
        w.view.fit(max_zoom=SLIDE_ZOOM, min_zoom=SLIDE_ZOOM)
        title = w.spec_title()
        w.caption.setText(f"<b>{title}</b> &nbsp;·&nbsp; {len(self.blocks())} Inception blocks"
                          f" &nbsp;<span style='color:#aaa'>→ next · ← back · Esc leave</span>")
