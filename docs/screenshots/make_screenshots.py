"""Take the README's screenshots of the explorer window; run under Xvfb (see below).

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/make_screenshots.py
    xvfb-run -s "-screen 0 1280x720x24" .venv/bin/python docs/screenshots/make_screenshots.py --presentation

Grabs the X screen itself (QScreen.grabWindow), so what is saved is what the display shows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presentation", action="store_true", help="only the presentation-mode shots")
    ap.add_argument("--dark", action="store_true", help="only the dark-palette shot")
    args = ap.parse_args()

    from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    from explorer.qt.main_window import MainWindow

    app = QApplication(sys.argv)
    app.setStyle("Fusion")
    if args.dark:
        pal = QPalette()
        for role, color in ((QPalette.ColorRole.Window, "#2b2b2b"), (QPalette.ColorRole.WindowText, "#e6e6e6"),
                            (QPalette.ColorRole.Base, "#1e1e1e"), (QPalette.ColorRole.Text, "#e6e6e6"),
                            (QPalette.ColorRole.Button, "#353535"), (QPalette.ColorRole.ButtonText, "#e6e6e6"),
                            (QPalette.ColorRole.Highlight, "#3d8ee6"), (QPalette.ColorRole.PlaceholderText, "#9a9a9a")):
            pal.setColor(role, QColor(color))
        app.setPalette(pal)
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "shots.ini"), QSettings.Format.IniFormat)
    window = MainWindow("googlenet", weights="auto", allow_download=True, settings=settings)
    screen = app.primaryScreen()
    geo = screen.availableGeometry()
    window.setGeometry(geo)
    window.show()

    def wait(signal=None, ms=60_000):
        loop = QEventLoop()
        if signal is not None:
            signal.connect(loop.quit)
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def settle(ms=400):
        wait(None, ms)

    def shot(name):
        settle()
        path = HERE / name
        screen.grabWindow(0).save(str(path))
        print("saved", path)

    wait(window.graph_ready, 180_000)
    if window.loaded is None:
        wait(window.model_loaded, 60_000)
    settle()

    if args.presentation:
        window.presentation.enter()
        settle()
        window.presentation.go(0)
        shot("presentation.png")
        window.presentation.go(4)
        shot("presentation_step5.png")
        window.presentation.leave()
    elif args.dark:
        window.expand("inception3a")
        window.view.select("inception3a")
        window.view.set_zoom(0.9)
        window.view.centerOn(window.view.frames["inception3a"])
        shot("dark_palette.png")
    else:
        window.view.select("inception4a")
        window.view.centerOn(window.view.boxes["inception4a"])
        shot("collapsed_graph.png")
        window.expand("inception3a")
        window.view.select("inception3a")
        window.view.set_zoom(1.0)
        window.view.centerOn(window.view.frames["inception3a"])
        shot("expanded_block.png")
        if window.paper_dock is not None:
            window.paper_dock.raise_()
            window.resizeDocks([window.paper_dock], [int(geo.width() * 0.62)], Qt.Orientation.Horizontal)
            shot("paper_table.png")
            window.resizeDocks([window.paper_dock], [380], Qt.Orientation.Horizontal)
            window.details_dock.raise_()
        window.set_input_size(12)
        window.view.centerOn(window.view.boxes[window.failed_node] if window.failed_node in window.view.boxes
                             else window.view.boxes["input"])
        shot("input_too_small.png")
        window.set_input_size(299)
        window.set_model("inception_v3")
        wait(window.graph_ready, 120_000)
        wait(window.model_loaded, 120_000)
        window.expand("Mixed_7b")
        window.view.select("Mixed_7b")
        window.view.set_zoom(0.9)
        window.view.centerOn(window.view.frames["Mixed_7b"])
        shot("inception_v3_nested_branches.png")
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
