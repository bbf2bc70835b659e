"""What the demo-model screenshot scripts share (make_branch_off_screenshot.py, make_knockouts_demo.py): the window
on the demo model at the screen's size with settings of its own, the event loop turned while waiting, the drawn
star classified, and a shot saved in 256 colours (the drawn star's noise made a full-colour PNG 270 KB; the README
keeps shots under 250 KB)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


class DemoWindow:
    """The main window on shapes_inception (its shipped weights, no download, no sample classified)."""

    def __init__(self):
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication

        from explorer.qt.window.main_window import MainWindow

        self.app = QApplication(sys.argv)
        self.app.setStyle("Fusion")
        settings = QSettings(str(Path(tempfile.mkdtemp()) / "shots.ini"), QSettings.Format.IniFormat)
        self.window = MainWindow("shapes_inception", weights="auto", allow_download=False, settings=settings,
                                 classify_sample=False)
        self.screen = self.app.primaryScreen()
        self.window.setGeometry(self.screen.availableGeometry())
        self.window.show()

    def wait(self, ms: int) -> None:
        """Turn the event loop for `ms` milliseconds."""
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def until(self, condition, seconds: float = 180) -> None:
        """Turn the event loop until `condition()` holds; exit when `seconds` pass first."""
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            self.wait(200)

    def show_drawn_star(self) -> None:
        """The drawn star classified, as its sample button does."""
        window, st = self.window, self.window.state
        self.until(lambda: window.images is not None and window.images.classify.classifier is not None)
        window.images.classify.drawn_buttons[1].click()
        self.until(lambda: st.shown_image is not None and st.classification is not None)

    def save(self, folder: str, name: str) -> Path:
        """The X screen grabbed into `folder`/`name`, in 256 colours."""
        from PIL import Image

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        path = out / name
        self.screen.grabWindow(0).save(str(path))
        Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        return path
