"""View → Feature-map thumbnails: each box of the block graph shows the image's strongest map at its output.

The toggle lives in the window's ExplorerState (`thumbnails`, remembered in the settings); the maps come
from the capture of the image on screen (`explorer.core.lecture.dataflow.strongest_maps`), so showing them runs
no forward. They go when the image or the model changes, and come back for the next image.
"""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from explorer.qt.bind import bind

SETTING = "view/thumbnails"


class ThumbnailMenu(QObject):
    """The checkable View-menu action bound to `window.state.thumbnails`; hands the view its maps."""

    def __init__(self, window, menu):
        super().__init__(window)
        self.window, self.state = window, window.state
        self.action = QAction("Feature-map &thumbnails", self, checkable=True)
        self.action.setStatusTip("Each box shows the strongest feature map of the image on screen at its output")
        menu.addAction(self.action)
        st = self.state
        st.thumbnails = str(window.settings.value(SETTING, "false")).lower() == "true"
        bind(self.action, st, "thumbnails")
        st.connect("thumbnails", self._on_toggled)
        for name in ("shown_image", "graph"):
            st.connect(name, lambda _v: self.refresh())

    def _on_toggled(self, on: bool) -> None:
        self.window.settings.setValue(SETTING, on)
        self.refresh()

    def refresh(self) -> None:
        """Give the view the maps of the image on screen (or none: off, no image, another model's)."""
        st, view = self.state, self.window.view
        shown = st.shown_image
        cap = getattr(shown, "capture", None)
        if not st.thumbnails or cap is None or st.graph is None or cap.graph_name != st.graph.name:
            view.set_thumbnails(None)
            return
        from explorer.core.lecture.dataflow import strongest_maps

        try:
            view.set_thumbnails(strongest_maps(cap, st.graph))
        except Exception as e:  # a network whose outputs cannot be read must not take the window down
            view.set_thumbnails(None)
            self.window.show_status(f"thumbnails: {e}", 10000, topic="thumbnails")
