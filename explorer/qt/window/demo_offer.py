"""The demo model offered where published weights cannot be had (issue 24).

Offline, every network the window opens has random weights: its predictions, maps and curves mean nothing.
While the weights are random, the weights bar offers "Open the demo model (trained on shapes, works offline)":
`shapes_inception`, a small Inception whose trained weights ship with the package. The offer follows the
state's model (the demo model is not offered to itself); taking it switches the window to the demo model with
its shipped weights, whatever weights the window was started with (`--weights none` asked for random weights
for the model it named, not for the demo).
"""

from __future__ import annotations

from PySide6.QtCore import QObject

from explorer.core.model.zoo import model_names

#: The zoo's demo model: trained on drawn shapes (explorer.core.demo), its weights shipped.
DEMO_MODEL = "shapes_inception"


class DemoOffer(QObject):
    """Binds the weights bar's demo button: offered for every model but the demo, a click opens the demo."""

    def __init__(self, window, bar):
        super().__init__(window)
        self.window = window
        self.bar = bar
        bar.demo_requested.connect(self.open_demo)
        window.state.connect("model", self._follow_model)
        self._follow_model(window.state.model)

    def _follow_model(self, name: str | None) -> None:
        self.bar.offer_demo(name != DEMO_MODEL and DEMO_MODEL in model_names())

    def open_demo(self) -> None:
        """Switch to the demo model, with its shipped weights."""
        w = self.window
        w.models.set_model(DEMO_MODEL)
        # set_model asked for the weights the window was started with; the demo's load, which starts once its
        # graph is built on a worker, takes its own instead.
        w.session.weights = "auto"
