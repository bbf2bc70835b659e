"""Presentation mode: full screen, large type, high contrast; the arrow keys walk through the blocks.

Without an image, each step expands, highlights and centres the next Inception block (collapsing the
previous one) and writes a caption with the block's name, output shape and branch channels. With an
image on screen the slides are data-flow slides (`explorer.core.lecture.dataflow`, drawn by `DataflowView`):
the input as the network sees it, one slide per block with the image's feature maps in each branch,
and the top-5 — all from the capture the image was classified with, so stepping runs no forward.
F turns flow mode on and off (while it is on, → and Space light the next branch, then the join, before the
next slide; the line under the slide says which mode is on),
D switches between data-flow and graph slides, + and − change the maps per branch (remembered).
An image dropped while presenting replaces the slides' content in place, on the same slide; another
model starts again at its overview.
Esc restores the window as it was: its geometry, its docks' sizes and which of their tabs was raised.

What it reads of the window: graph, trace, expanded, view, caption, weights_bar, banner, notice,
chrome_widgets(), set_presentation_style(), redraw(), spec_title(), and its QDockWidget children; for
data-flow slides also state (shown_image, branch_evidence), loaded, settings, and the view's parent page,
where the slide view takes the graph's place.

Signals
-------
entered()            presentation mode started
left()               presentation mode ended
stepped(int, str)    index and name of the block now shown (-1, "" for the overview); on data-flow
                     slides the slide's index and name ("input", a block, "top-5")
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import QDockWidget

from explorer.core.lecture.dataflow import DEFAULT_MAPS, Position, SlideDeck, clamp_maps, next_position, previous_position
from explorer.core.text import fmt_branches_off, fmt_shape
from explorer.qt.panels import UNLEARNED, unlearned

if TYPE_CHECKING:
    from explorer.qt.window.main_window import MainWindow

NEXT_KEYS = ("Right", "Space", "PgDown", "Down")
PREV_KEYS = ("Left", "Backspace", "PgUp", "Up")
#: Where the number of feature maps per branch is remembered.
MAPS_SETTING = "presentation/maps_per_branch"
#: The line under a data-flow slide.
DATAFLOW_FOOTER = "→ next · ← back · F flow: a branch at a time · + − maps · D graph · Esc leave"
#: The line under a data-flow slide in flow mode.
FLOW_FOOTER = "flow: → or Space lights the next branch, then the join · ← back · F whole slides · Esc leave"
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
        #: The data-flow slides of the image on screen (None: no image with a capture), where the talk
        #: is in them, whether flow mode is on, and whether data-flow slides are wanted over graph ones.
        self.deck: SlideDeck | None = None
        self.position = Position()
        self.flow = False
        self.dataflow_wanted = True
        self.slide_view = None  # the DataflowView, made on first use
        for keys, slot in ((NEXT_KEYS, self.next), (PREV_KEYS, self.previous), (("Esc",), self.leave),
                           (("Home",), self.first), (("F",), self.toggle_flow), (("D",), self.toggle_dataflow),
                           (("+", "="), self.more_maps), (("-",), self.fewer_maps)):
            for k in keys:
                sc = QShortcut(QKeySequence(k), window)
                sc.setContext(Qt.ShortcutContext.WindowShortcut)
                sc.setEnabled(False)
                sc.activated.connect(slot)
                self._shortcuts.append(sc)
        window.state.connect("shown_image", self._on_shown_image)
        window.graph_ready.connect(self._on_graph_ready)
        window.state.connect("branch_evidence", self._on_evidence)
        window.state.connect("knockouts", self._on_knockouts)

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
        w.graph_page.set_presentation_style(presentation_scale(height))
        if screen is not None:
            w.setGeometry(screen.geometry())  # without a window manager, full screen alone may not resize
        w.showFullScreen()
        w.view.set_chrome(False)
        w.view.legend_widget.set_elsewhere(True)  # an overlay's legend goes in the caption: it hid boxes (aux1)
        for sc in self._shortcuts:
            sc.setEnabled(True)
        w.caption.show()
        w.view.setFocus()
        self.index = -1
        w.expanded = ()
        w.graph_page.redraw()
        self._show_overview()
        self.position = Position()
        self.deck = self._make_deck()
        if self.showing_dataflow():
            self._show_dataflow(True)
            self._render()
        self.entered.emit()

    def leave(self) -> None:
        w = self.window
        if not self.active:
            return
        self.active = False
        w.state.presenting = False
        for sc in self._shortcuts:
            sc.setEnabled(False)
        self._show_dataflow(False)
        self.deck = None
        w.caption.hide()
        w.view.legend_widget.set_elsewhere(False)
        w.view.set_chrome(True)
        w.view.set_highlighted(None)
        w.graph_page.set_presentation_style(None)
        s = self._saved
        w.expanded = set(s["expanded"])
        w.graph_page.redraw()
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
        if self.showing_dataflow():
            self.go_slide(Position(0, 0))
        else:
            self.go(0)

    def next(self) -> None:
        if self.showing_dataflow():
            self.go_slide(next_position(self.deck, self.position, self.flow))
        else:
            self.go(self.index + 1)

    def previous(self) -> None:
        if self.showing_dataflow():
            self.go_slide(previous_position(self.deck, self.position, self.flow))
        else:
            self.go(self.index - 1)

    # -- data-flow slides ----------------------------------------------------------------------

    def showing_dataflow(self) -> bool:
        """Whether the slides on screen are data-flow slides (an image is on screen and they are wanted)."""
        return self.active and self.dataflow_wanted and self.deck is not None

    def maps_per_branch(self) -> int:
        """The feature maps drawn per branch (a setting, remembered between sessions)."""
        try:
            return clamp_maps(int(self.window.settings.value(MAPS_SETTING, DEFAULT_MAPS)))
        except (TypeError, ValueError):
            return DEFAULT_MAPS

    def set_maps_per_branch(self, n: int) -> None:
        n = clamp_maps(n)
        self.window.settings.setValue(MAPS_SETTING, n)
        if self.deck is not None:
            self.deck.set_maps_per_branch(n)
            if self.showing_dataflow():
                self._render()

    def more_maps(self) -> None:
        self.set_maps_per_branch(self.maps_per_branch() + 1)

    def fewer_maps(self) -> None:
        self.set_maps_per_branch(self.maps_per_branch() - 1)

    def toggle_flow(self) -> None:
        """F: flow mode on (the slide starts at its first branch; → and Space then light the next step) or off
        (whole slides again, on the same slide)."""
        self.flow = not self.flow
        if self.showing_dataflow():
            self.position = Position(self.position.slide, 0)
            self._render()

    def toggle_dataflow(self) -> None:
        """Switch between data-flow slides and graph slides, on the same block."""
        if not self.active:
            return
        if self.showing_dataflow():
            block = self.deck.names()[self.position.slide]
            self.dataflow_wanted = False
            self._show_dataflow(False)
            blocks = self.blocks()
            self.go(blocks.index(block) if block in blocks else -1)
        else:
            self.dataflow_wanted = True
            if self.deck is None:
                self.deck = self._make_deck()
            if self.deck is None:
                return
            self.position = Position(self._slide_for_graph_index(), 0)
            self._show_dataflow(True)
            self._render()

    def go_slide(self, pos: Position) -> None:
        """Show data-flow slide `pos.slide` with flow step `pos.step` lit."""
        if not self.showing_dataflow():
            return
        last = len(self.deck) - 1
        self.position = Position(max(0, min(last, pos.slide)), max(0, pos.step))
        self._render()

    def _slide_for_graph_index(self) -> int:
        blocks = self.blocks()
        if 0 <= self.index < len(blocks) and blocks[self.index] in self.deck.blocks:
            return self.deck.index_of(blocks[self.index])
        return 0

    def _make_deck(self) -> SlideDeck | None:
        """The slides of the image on screen, when it was captured by the model on screen."""
        w = self.window
        shown = w.state.shown_image
        cap = getattr(shown, "capture", None)
        if cap is None or w.graph is None or cap.graph_name != w.graph.name or shown.rgb is None:
            return None
        from explorer.core.session.tasks import display_name

        categories = getattr(w.loaded, "categories", None)
        deck = SlideDeck(w.graph, cap, shown.rgb, result=shown.result, categories=categories,
                         maps_per_branch=self.maps_per_branch(), attribution=self._attribution_shares(shown),
                         knockouts=self._knockout_deltas(),
                         source=display_name(shown.source) + self._weights_note())
        return deck if deck.blocks else None

    def _weights_note(self) -> str:
        """Said beside the image's name when the maps come from random weights (they look like noise) or from a
        network with branches switched off."""
        off = self.window.state.result_key.off
        return (" · random weights" if unlearned(self.window.loaded) else "") + \
            (f" · {fmt_branches_off(*off)}" if off else "")

    def _caveat(self) -> str:
        """Said on every data-flow slide of random weights: its maps, shares and top-5 mean nothing; and of a network
        with branches switched off: which."""
        off = self.window.state.result_key.off
        parts = [f"⚠ {UNLEARNED[:1].upper()}{UNLEARNED[1:]}"] if unlearned(self.window.loaded) else []
        if off:
            parts.append(f"⚠ Modified network: {fmt_branches_off(*off)}")
        return "  ".join(parts)

    def _attribution_shares(self, shown=None) -> dict | None:
        """The image's branch shares (state.branch_evidence), when they were computed for the model on screen."""
        ev, graph = self.window.state.branch_evidence, self.window.graph
        return ev.shares() if ev is not None and graph is not None and ev.model == graph.name else None

    def _knockout_deltas(self) -> dict | None:
        """The image's knock-out effects for its top-1 (state.knockouts), when computed."""
        from explorer.core.lecture.dataflow import knockout_deltas

        effects = self.window.state.knockouts
        return knockout_deltas(effects) if effects is not None and effects.target == effects.top1 else None

    def _on_knockouts(self, _effects) -> None:
        if self.deck is not None:
            self.deck.set_knockouts(self._knockout_deltas())
            if self.showing_dataflow():
                self._render()

    def _on_evidence(self, _evidence) -> None:
        shares = self._attribution_shares()
        if self.deck is not None and shares is not None:
            self.deck.set_attribution(shares)
            if self.showing_dataflow():
                self._render()

    def _on_shown_image(self, shown) -> None:
        """Another image while presenting: the same slide, with the new image's content."""
        if not self.active:
            return
        keep = self.position
        self.deck = self._make_deck()
        if self.deck is None:
            if self.slide_view is not None and self.slide_view.isVisible():
                self._show_dataflow(False)
                self.go(self.position.slide - 1)  # slide k shows block k - 1 of the graph slides
            return
        if not self.dataflow_wanted:
            return
        if not self.slide_view or not self.slide_view.isVisible():
            keep = Position(self._slide_for_graph_index(), 0)
            self._show_dataflow(True)
        last = len(self.deck) - 1
        slide = min(keep.slide, last)
        self.position = Position(slide, min(keep.step, self.deck.flow_steps(slide) - 1))
        self._render()

    def _on_graph_ready(self, _name: str) -> None:
        """Another model while presenting: its overview, under its own title (the previous model's slide
        index and caption no longer fit); its image's slides follow once the image is captured again."""
        if not self.active:
            return
        self.deck = self._make_deck()
        self.position = Position()
        if self.showing_dataflow():
            self._show_dataflow(True)
            self._render()
            return
        self._show_dataflow(False)
        self.go(-1)

    def _show_dataflow(self, on: bool) -> None:
        """Put the slide view in the graph's place (on) or the graph back (off)."""
        w = self.window
        if on and self.slide_view is None:
            from explorer.qt.lecture.dataflow_view import DataflowView

            page = w.view.parentWidget()
            self.slide_view = DataflowView(page)
            lay = page.layout()
            lay.insertWidget(lay.indexOf(w.view) + 1, self.slide_view, 1)
        if self.slide_view is None:
            return
        self.slide_view.setVisible(on)
        w.view.setVisible(not on)
        w.caption.setVisible(self.active and not on)
        if on:
            self.slide_view.setFocus()
        elif self.active:
            w.view.setFocus()

    def _render(self) -> None:
        deck, pos = self.deck, self.position
        slide = deck.slide(pos.slide)
        self.index = pos.slide
        lit = slide.lit(pos.step) if self.flow else None
        count = f"{pos.slide + 1}/{len(deck)}"
        footer = FLOW_FOOTER if self.flow and slide.kind == "block" else DATAFLOW_FOOTER
        self.slide_view.set_slide(slide, lit, flow=self.flow, footer=f"{count}  ·  {footer}", caveat=self._caveat())
        self.stepped.emit(pos.slide, deck.names()[pos.slide])

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
            w.graph_page.redraw()
            self._show_overview()
            self.stepped.emit(-1, "")
            return
        name = blocks[index]
        w.expanded = {name}
        w.graph_page.redraw(anchor=name)
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
                f" &nbsp;<span style='color:#aaa'>({n}/{count})</span>" + self._legend_line())

    def _legend_line(self) -> str:
        """The overlay's legend, under the slide's caption (over the drawing it hid boxes)."""
        text = self.window.view.legend_widget.caption()
        return f"<br><span style='color:#ddd'>{html.escape(text)}</span>" if text else ""

    def _show_overview(self) -> None:
        w = self.window
        w.view.set_highlighted(None)
        w.view.fit(max_zoom=SLIDE_ZOOM, min_zoom=SLIDE_ZOOM)
        title = w.spec_title()
        w.caption.setText(f"<b>{title}</b> &nbsp;·&nbsp; {len(self.blocks())} Inception blocks"
                          f" &nbsp;<span style='color:#aaa'>→ next · ← back · Esc leave</span>" + self._legend_line())
