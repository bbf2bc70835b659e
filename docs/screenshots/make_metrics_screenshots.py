"""The README's shots of issue 27's metrics, on the demo model and its drawn star, at a 1280×800 laptop screen:

- metrics_panel.png: the Metrics tab beside Grad-CAM's map — each metric's value with its interval over noise seeds,
  its reference's interval and a verdict only where the interval clears it, then the star's localisation;
- metrics_methods_table.png: the Methods tab with three maps measured, and the line under it that ranks them only
  where the metrics agree (here it says which metric puts which method first).

The Details dock is closed first (View menu), so the evidence tabs beside the map have the screen's width.
Run from the project root (about a minute on two cores):

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/screenshots/make_metrics_screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = (("saliency", None), ("integrated_gradients", None), ("grad_cam", "last"))


def main() -> int:
    from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
    from PySide6.QtWidgets import QAbstractItemView, QApplication

    app = QApplication(sys.argv)
    app.setStyle("Fusion")
    from explorer.qt.window.main_window import MainWindow

    settings = QSettings(str(Path(tempfile.mkdtemp()) / "shots.ini"), QSettings.Format.IniFormat)
    window = MainWindow("shapes_inception", allow_download=False, settings=settings, restore=False)
    window.setGeometry(app.primaryScreen().availableGeometry())
    window.show()

    def wait(signal=None, ms=60_000, *more):
        loop = QEventLoop()
        for s in (signal, *more):
            if s is not None:
                s.connect(loop.quit)
        QTimer.singleShot(ms, loop.quit)
        loop.exec()
        for s in (signal, *more):
            if s is not None:
                s.disconnect(loop.quit)

    def until(cond, seconds=180):
        deadline = time.monotonic() + seconds
        while not cond() and time.monotonic() < deadline:
            wait(None, 200)

    def shot(name):
        wait(None, 800)
        app.primaryScreen().grabWindow(0).save(str(HERE / name))
        print("saved", HERE / name)

    until(lambda: window.images is not None and window.state.loaded is not None
          and window.images.classify.classifier is not None)
    images = window.images
    panel = images.attribution
    images.classify.drawn_buttons[1].click()  # the drawn star
    until(lambda: panel.x is not None and window.state.image is not None and window.state.image.mask is not None)
    window.details_dock.close()  # the Details dock closed, as a person would: the tabs beside the map get its width
    dock = images.attribution_dock
    dock.show()
    dock.raise_()
    window.resizeDocks([dock], [round(window.height() * 0.62)], Qt.Orientation.Vertical)
    last = window.graph.blocks()[-1].name
    for method, layer in METHODS:
        panel.set_method(method)
        if layer:
            panel.set_gradcam_layer(last, None)
        panel.run()
        wait(panel.attribution_finished, 300_000, panel.attribution_failed)
        panel.run_metrics()
        wait(panel.metrics_finished, 600_000, panel.attribution_failed)
        print(method, {n: (s.interval, s.reference_interval, s.clears_reference)
                       for n, s in panel.record.metrics.items()})
    window.view.select(last)
    window.view.centerOn(window.view.boxes[last])
    panel.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)  # no focus tint in the shot
    panel.evidence_tabs.setCurrentWidget(panel.evidence_tabs.metrics)
    shot("metrics_panel.png")
    panel.evidence_tabs.setCurrentWidget(panel.evidence_tabs.methods)
    print("ranking:", panel.ranking_label.text())
    shot("metrics_methods_table.png")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
