"""The laptop screenshots (docs/screenshots/laptop_*_SIZE.png): Activations, Attributions with curves, Compare and
the shortcuts, at one screen size, with random weights. Run under Xvfb at each size, from the project root:

    Xvfb :77 -screen 0 1280x800x24 & DISPLAY=:77 .venv/bin/python docs/screenshots/make_laptop_screenshots.py \
        docs/screenshots 1280x800
    Xvfb :78 -screen 0 1600x1000x24 & DISPLAY=:78 .venv/bin/python docs/screenshots/make_laptop_screenshots.py \
        docs/screenshots 1600x1000
"""
import os
import sys
import tempfile
import time

from PySide6.QtCore import QSettings, QTimer, QEventLoop
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv)
app.setStyle("Fusion")
from explorer.qt.window.main_window import MainWindow
out, tag = sys.argv[1], sys.argv[2]
s = QSettings(os.path.join(tempfile.mkdtemp(), "s.ini"), QSettings.Format.IniFormat)
w = MainWindow("googlenet", settings=s, restore=False, allow_download=False)
w.show()
def wait(cond, t=300):
    t0=time.time()
    while not cond() and time.time()-t0<t:
        app.processEvents(); time.sleep(0.05)
def pause(ms):
    loop=QEventLoop(); QTimer.singleShot(ms, loop.quit); loop.exec()
def grab(name):
    pause(800)
    app.primaryScreen().grabWindow(0).save(os.path.join(out, f"laptop_{name}_{tag}.png"))
wait(lambda: w.images is not None and getattr(w.state.shown_image, "capture", None) is not None and w.session.captures is not None)
w.view.select("inception4a")
w.images.activation_dock.raise_()
pause(500)
w.images.activations.select_channel(1, 5)
grab("activations")
a = w.images.attribution
w.images.attribution_dock.raise_()
a.set_method("grad_cam")
done=[]; a.attribution_finished.connect(done.append); a.run(); wait(lambda: bool(done))
d2=[]; a.faithfulness_finished.connect(d2.append); a.curve_steps.setValue(20); a.run_faithfulness(); wait(lambda: bool(d2))
grab("attributions")
cw = w.compare.open()
ready=[]; cw.comparison_ready.connect(ready.append); wait(lambda: bool(ready) or cw.comparison is not None, 120)
grab("compare")
cw.close()
dlg = w.help_windows.show_shortcuts()
grab("shortcuts")
dlg.close()
w.close()
