"""The README's screenshot of a branch switched off (issue 26), on the demo model at 1280×800; run under Xvfb:

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/screenshots/make_branch_off_screenshot.py

The demo model (shapes_inception, its shipped weights) classifies the drawn star; inception3b is opened and its
branch 2 switched off through the graph's right-click menu (its entry, triggered); the shot shows the strip above
the graph, the branch greyed and tagged "off", and the top-5 of the modified network under its heading. Saves
branch_off_demo.png beside this script (or under --out).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BLOCK, BRANCH = "inception3b", 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE), help="folder for the shot (default: beside this script)")
    args = ap.parse_args()

    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from explorer.qt.window.main_window import MainWindow

    app = QApplication(sys.argv)
    app.setStyle("Fusion")
    settings = QSettings(str(Path(tempfile.mkdtemp()) / "shots.ini"), QSettings.Format.IniFormat)
    window = MainWindow("shapes_inception", weights="auto", allow_download=False, settings=settings,
                        classify_sample=False)
    screen = app.primaryScreen()
    window.setGeometry(screen.availableGeometry())
    window.show()

    def wait(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def until(condition, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            wait(200)

    st = window.state
    until(lambda: window.images is not None and window.images.classify.classifier is not None)
    window.images.classify.drawn_buttons[1].click()  # the drawn star
    until(lambda: st.shown_image is not None and st.classification is not None)
    window.graph_page.expand(BLOCK)
    menu = window.branch_switches.menu_for(f"{BLOCK}/b{BRANCH}")
    [switch] = [a for a in menu.actions() if a.text() == f"Switch {BLOCK} branch {BRANCH + 1} off"]
    switch.trigger()
    until(lambda: st.shown_image is not None and st.classification is not None and st.result_key.off is not None)
    dock = window.images.classify_dock
    dock.raise_()
    window.view.select(BLOCK, center=False)  # Details shows the block; the branch keeps its dashed border
    window.view.centerOn(window.view.frames[BLOCK])
    wait(600)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "branch_off_demo.png"
    screen.grabWindow(0).save(str(path))
    from PIL import Image

    # 256 colours: the drawn star's noise made the full-colour PNG 270 KB (the README keeps shots under 250 KB).
    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print("saved", path, "top-1:", st.classification.top[0].label, f"{st.classification.top[0].prob:.3f}")
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
