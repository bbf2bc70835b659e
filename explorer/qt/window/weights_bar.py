"""The weights bar above the graph: where the weights come from; while random, why, with Retry download, Open
weights file… and (when offered) the demo model; while downloading, progress and Cancel.

Signals
-------
WeightsBar.retry_requested()                  "Retry download" clicked
WeightsBar.open_requested()                   "Open weights file…" clicked
WeightsBar.cancel_requested()                 the running download's Cancel clicked
WeightsBar.demo_requested()                   "Open the demo model…" clicked
"""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton

from explorer.core.text import fmt_bytes
from explorer.qt.panels import Suppressible, banner_palette


#: The weights bar's offer of a network that works offline (issue 24).
DEMO_OFFER = "Open the demo model (trained on shapes, works offline)"


class WeightsBar(Suppressible, QFrame):
    """Shows where the weights come from; while random, a warning with retry/open (and, when offered, the demo
    model); while downloading, progress."""

    retry_requested = Signal()
    open_requested = Signal()
    cancel_requested = Signal()
    demo_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.retry = QPushButton("Retry download", self)
        self.open = QPushButton("Open weights file…", self)
        self.cancel = QPushButton("Cancel", self)
        self.demo = QPushButton(DEMO_OFFER, self)
        self.demo.setToolTip("A small Inception trained on drawn shapes: its weights ship with the app, so its\n"
                             "classifications, maps and curves mean something without a download")
        self.demo.hide()
        #: Whether random weights come with the demo model's button (not for the demo model itself).
        self.demo_offered = False
        for w in (self.label,):
            lay.addWidget(w, 1)
        for w in (self.progress, self.cancel, self.demo, self.retry, self.open):
            lay.addWidget(w)
        self.retry.clicked.connect(self.retry_requested)
        self.open.clicked.connect(self.open_requested)
        self.cancel.clicked.connect(self.cancel_requested)
        self.demo.clicked.connect(self.demo_requested)
        banner_palette(self, "warning")
        self.hide()

    def show_random(self, reason: str | None, can_download: bool = True) -> None:
        from explorer.core.model.weights import RANDOM_WARNING

        text = f"<b>{RANDOM_WARNING}</b>"
        if reason:
            text += f" — {html.escape(reason)}"
        self.label.setText(text)
        self.retry.setVisible(can_download)
        self.open.show()
        self.demo.setVisible(self.demo_offered)
        for w in (self.progress, self.cancel):
            w.hide()
        self.show()

    def offer_demo(self, on: bool) -> None:
        """Whether random weights come with the demo model's button from now on."""
        self.demo_offered = on
        if not on:
            self.demo.hide()

    def show_loading(self, text: str) -> None:
        self.label.setText(html.escape(text))
        self.progress.setRange(0, 0)
        for w in (self.retry, self.open, self.demo):
            w.hide()
        self.progress.show()
        self.cancel.show()
        self.show()

    def show_progress(self, done: int, total: int | None) -> None:
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
            self.progress.setFormat(f"{fmt_bytes(done)} / {fmt_bytes(total)}")
            self.label.setText("Downloading pretrained weights…")
        else:
            self.progress.setRange(0, 0)
            self.progress.setFormat(fmt_bytes(done))

    def hide_all(self) -> None:
        self.hide()

    def text(self) -> str:
        return self.label.text() if self.wanted else ""
