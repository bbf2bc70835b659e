"""Take the README's screenshots of the explorer window; run under Xvfb (see below).

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/make_screenshots.py
    xvfb-run -s "-screen 0 1280x720x24" .venv/bin/python docs/screenshots/make_screenshots.py --presentation
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/make_screenshots.py compare_window
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/make_screenshots.py channel_examples branch_grid
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/make_screenshots.py \
        attribution_faithfulness attribution_sanity --calibrated
    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python docs/screenshots/make_screenshots.py \
        offline_banner demo_attribution     # offline: GoogLeNet's weights cannot be had, then the demo model

Names on the command line make only those shots (see NAMED_SHOTS); without any, every shot but the
presentation and dark ones. Grabs the X screen itself (QScreen.grabWindow), so what is saved is what
the display shows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Shots that can be made on their own, by name (each saves NAME.png).
NAMED_SHOTS = ("compare_window", "compare_factorisation", "open_model_resnet18", "dataflow_slide",
               "dataflow_flow_step", "graph_thumbnails", "channel_examples",
               "branch_grid", "overlay_time", "overlay_attribution",
               "attribution_faithfulness", "attribution_sanity", "offline_banner", "demo_attribution")
#: The shots that walk the sample photo through the network (they wait for it to be classified).
IMAGE_SHOTS = ("dataflow_slide", "dataflow_flow_step", "graph_thumbnails", "overlay_attribution")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presentation", action="store_true", help="only the presentation-mode shots")
    ap.add_argument("--dark", action="store_true", help="only the dark-palette shot")
    ap.add_argument("--window", metavar="WxH", help="window size instead of the whole screen (e.g. 1280x860,"
                    " the default size); shots are then saved under --out")
    ap.add_argument("--out", default=None, help="folder for the shots (default: beside this script)")
    ap.add_argument("--calibrated", action="store_true",
                    help="GoogLeNet with the test suite's calibrated random weights (tests/netutil.py) where the "
                    "published ones cannot be had: maps and curves that respond to the image")
    ap.add_argument("shots", nargs="*", metavar="NAME", help=f"only these shots: {', '.join(NAMED_SHOTS)}")
    args = ap.parse_args()
    unknown = [n for n in args.shots if n not in NAMED_SHOTS]
    if unknown:
        ap.error(f"unknown shot {', '.join(unknown)}; one of {', '.join(NAMED_SHOTS)}")

    from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    from explorer.qt.window.main_window import MainWindow

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
    weights = "auto"
    if args.calibrated:
        sys.path.insert(0, str(HERE.parents[1]))
        from tests.netutil import calibrated_model, write_weights

        weights = str(write_weights(calibrated_model("googlenet"), Path(tempfile.mkdtemp()) / "calibrated.safetensors"))
    window = MainWindow("googlenet", weights=weights, allow_download=True, settings=settings)
    screen = app.primaryScreen()
    geo = screen.availableGeometry()
    if args.window:
        w, h = (int(v) for v in args.window.lower().split("x"))
        window.setGeometry(geo.x(), geo.y(), w, h)
    else:
        window.setGeometry(geo)
    window.show()
    out = Path(args.out) if args.out else HERE
    out.mkdir(parents=True, exist_ok=True)

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

    def settle(ms=400):
        wait(None, ms)

    def shot(name):
        settle()
        path = out / name
        if args.window:
            window.grab().save(str(path))
        else:
            screen.grabWindow(0).save(str(path))
        print("saved", path)

    wait(window.graph_ready, 180_000)
    if window.loaded is None:
        wait(window.model_loaded, 60_000)
    settle()

    def compared(cw, a, b, size):
        """Compare a and b at size in the Compare window and wait for that comparison."""
        failed = []
        cw.comparison_failed.connect(failed.append)
        cw.set_models(a, b)
        cw.set_input_size(size)
        deadline = time.monotonic() + 180
        while not failed and time.monotonic() < deadline and (
                cw.comparison is None
                or (cw.comparison.a.model, cw.comparison.b.model, cw.comparison.size) != (a, b, (size, size))):
            wait(cw.comparison_ready, 5_000, cw.comparison_failed)
        cw.comparison_failed.disconnect(failed.append)
        if failed:
            print("comparison failed:", failed[0])
        settle()

    def sample_shown():
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (window.images is None or window.images.classify.shown is None):
            wait(None, 500)

    def dock_shot(name, dock):
        """Only `dock`, as the screen shows it."""
        settle(800)
        top_left = dock.mapToGlobal(dock.rect().topLeft())
        screen.grabWindow(0, top_left.x(), top_left.y(), dock.width(), dock.height()).save(str(out / name))
        print("saved", out / name)

    def attribution_shots(names):
        """Maps of the sample photo by three methods with their curves, then Grad-CAM's sanity check."""
        from PySide6.QtWidgets import QAbstractItemView

        images = window.images
        panel = images.attribution
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and panel.x is None:
            wait(None, 500)
        dock = images.attribution_dock
        dock.show()
        dock.raise_()
        window.resizeDocks([dock], [round(window.height() * 0.62)], Qt.Orientation.Vertical)
        for method, layer in (("saliency", None), ("grad_cam_plus_plus", "inception4e"), ("grad_cam", "inception4e")):
            panel.set_method(method)
            if layer:
                panel.set_gradcam_layer(layer, None)
            panel.run()
            wait(panel.attribution_finished, 300_000, panel.attribution_failed)
            panel.run_faithfulness()
            wait(panel.faithfulness_finished, 300_000, panel.attribution_failed)
        panel.evidence_tabs.setCurrentIndex(0)
        panel.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)  # no focus tint in the shot
        if "attribution_faithfulness" in names:
            dock_shot("attribution_faithfulness.png", dock)
        if "attribution_sanity" in names:
            panel.run_sanity_check()
            wait(panel.sanity_finished, 600_000, panel.attribution_failed)
            dock_shot("attribution_sanity.png", dock)
        panel.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)

    def demo_shots(names):
        """Offline, the weights bar offers the demo model; taken, its Grad-CAM of a drawn star with its curves
        and its localisation against the star's pixels (the sample's mask)."""
        bar = window.weights_bar
        until(lambda: window.images is not None and window.images.classify.shown is not None, 180)
        if "offline_banner" in names:
            if not bar.demo.isVisible():
                print("offline_banner: the weights bar offers no demo model (were the weights downloaded?)")
            window.view.select("inception4a")
            window.view.centerOn(window.view.boxes["inception4a"])
            shot("offline_banner.png")
        if "demo_attribution" not in names:
            return
        bar.demo.click()
        until(lambda: window.state.model == "shapes_inception" and window.state.loaded is not None
              and window.images.network_key is not None and window.images.classify.classifier is not None, 180)
        images = window.images
        panel = images.attribution
        star = images.classify.drawn_buttons[1]
        star.click()
        until(lambda: panel.x is not None and window.state.image is not None and window.state.image.mask is not None)
        dock = images.attribution_dock
        dock.show()
        dock.raise_()
        window.resizeDocks([dock], [round(window.height() * 0.6)], Qt.Orientation.Vertical)
        last = window.graph.blocks()[-1].name
        for method, layer in (("integrated_gradients", None), ("grad_cam", last)):
            panel.set_method(method)
            if layer:
                panel.set_gradcam_layer(layer, None)
            panel.run()
            wait(panel.attribution_finished, 300_000, panel.attribution_failed)
            panel.run_faithfulness()
            wait(panel.faithfulness_finished, 300_000, panel.attribution_failed)
        window.view.select(last)
        window.view.centerOn(window.view.boxes[last])
        panel.evidence_tabs.setCurrentIndex(0)
        shot("demo_attribution.png")

    def named_shots(names):
        if "attribution_faithfulness" in names or "attribution_sanity" in names:
            attribution_shots(names)
        if any(n in names for n in IMAGE_SHOTS):
            sample_shown()
        if "dataflow_slide" in names or "dataflow_flow_step" in names:
            p = window.presentation
            p.enter()
            settle()
            p.go_slide(type(p.position)(p.deck.index_of("inception4a"), 0))
            if "dataflow_slide" in names:
                shot("dataflow_slide.png")
            if "dataflow_flow_step" in names:
                p.go_slide(type(p.position)(p.deck.index_of("inception3b"), 0))
                p.toggle_flow()
                p.next()
                p.next()  # the third branch lit; the first two already passed, the fourth still to come
                shot("dataflow_flow_step.png")
            p.leave()
            settle()
        if "graph_thumbnails" in names:
            window.state.thumbnails = True
            window.resizeDocks([window.images.classify_dock], [230], Qt.Orientation.Vertical)
            window.view.select("inception4a")
            window.view.set_zoom(1.0)
            window.view.centerOn(window.view.boxes["inception4a"])
            shot("graph_thumbnails.png")
            window.state.thumbnails = False
        if "overlay_time" in names:
            # Measured time per block beside "where does the time go" (blocks by time vs share of mult-adds).
            window.state.overlay = "time"
            until(lambda: window.state.block_times is not None and window.view.overlay_values is not None, 300)
            window.view.select("inception4a")
            window.view.set_zoom(0.8)
            window.view.centerOn(window.view.boxes["inception4a"])
            table = window.overlay_menu.show_time_table()
            table.move(window.geometry().right() - table.width() - 40, window.geometry().top() + 260)
            settle(800)
            path = out / "overlay_time.png"
            screen.grabWindow(0).save(str(path)) if not args.window else window.grab().save(str(path))
            print("saved", path)
            table.close()
            window.state.overlay = "none"
        if "overlay_attribution" in names:
            # Each block's share of the image's |gradient × activation|, once Branch shares has computed it.
            shares = window.images.shares
            until(lambda: window.images.network_key is not None and shares.x is not None)
            shares.compute()
            until(lambda: window.state.branch_evidence is not None)
            window.state.overlay = "attribution"
            window.images.shares_dock.raise_()
            window.view.select("inception4a")
            window.view.set_zoom(0.8)
            window.view.centerOn(window.view.boxes["inception4a"])
            shot("overlay_attribution.png")
            window.state.overlay = "none"
        if "compare_window" in names or "compare_factorisation" in names:
            from PySide6.QtWidgets import QAbstractItemView

            cw = window.compare.open(0)
            cw.setGeometry(geo)
            if "compare_window" in names:
                compared(cw, "googlenet", "googlenet_paper", 224)
                # From the stage heading above inception3a: blocks whose 3rd branch is 3×3 vs the paper's 5×5.
                cw.table.scrollToItem(cw.table.item(cw.table_row("inception3a") - 1, 0),
                                      QAbstractItemView.ScrollHint.PositionAtTop)
                shot("compare_window.png")
            if "compare_factorisation" in names:
                # Inception v3's 1×7 convs keep their width (in = out), so the savings are the paper's.
                compared(cw, "inception_v3", "googlenet_paper", 299)
                cw.show_tab(1)
                convs = cw.factorisation.convs()
                pick = next(i for i, c in enumerate(convs) if c.kernel == (1, 7) and c.in_channels == c.out_channels)
                cw.factorisation.pick_layer(pick + 1)
                cw.factorisation.table.setCurrentCell(-1, -1)  # no focus tint on the first saving
                shot("compare_factorisation.png")
            cw.close()
        if "open_model_resnet18" in names:
            window.models.open_model("torchvision:resnet18")
            wait(window.model_opened, 180_000)
            # The weights: downloaded where there is a network; otherwise the window says why not.
            wait(window.model_loaded, 120_000, window.error_shown)
            block = "layer2.0" if "layer2.0" in {b.name for b in window.graph.blocks()} else \
                next(b.name for b in window.graph.blocks() if b.branches)
            window.graph_page.expand(block)
            window.view.select(block)
            window.view.set_zoom(1.0)
            window.view.centerOn(window.view.frames[block])
            shot("open_model_resnet18.png")

    def until(condition, seconds=600):
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            wait(None, 500)

    def channel_shots(names):
        """A channel of inception4a's 3×3 branch: its visualisation, its crops among the sample photos and
        its map; then the branch's grid of visualisations (the cache goes to a temporary folder)."""
        import os

        from explorer.core.model.samples import SAMPLES_DIR

        os.environ["INCEPTION_EXPLORER_CACHE"] = tempfile.mkdtemp()
        until(lambda: window.images is not None and window.images.classify.shown is not None
              and window.images.network_key is not None)
        panel = window.images.channel
        panel.state.steps, panel.state.size = 128, 128
        window.view.select("inception4a")
        window.images.activations.show_block("inception4a")
        window.images.activations.select_channel(1, 3)
        panel.index_folder(str(SAMPLES_DIR))
        window.images.channel_dock.raise_()
        window.resizeDocks([window.images.channel_dock], [round(window.height() * 0.62)], Qt.Orientation.Vertical)
        until(lambda: not panel.vis_label.pixmap().isNull() and "indexed" in panel.status.text())
        if "channel_examples" in names:
            shot("channel_examples.png")
        if "branch_grid" in names:
            panel.show_branch_grid()
            until(lambda: not panel.grid_label.pixmap().isNull(), 1200)
            shot("branch_grid.png")

    if args.shots:
        named_shots(args.shots)
        if {"channel_examples", "branch_grid"} & set(args.shots):
            channel_shots(args.shots)
        if {"offline_banner", "demo_attribution"} & set(args.shots):  # last: it switches to the demo model
            demo_shots(args.shots)
    elif args.presentation:
        window.presentation.dataflow_wanted = False  # the graph slides (the sample photo may arrive meanwhile)
        window.presentation.enter()
        settle()
        window.presentation.go(0)
        shot("presentation.png")
        window.presentation.go(4)
        shot("presentation_step5.png")
        window.presentation.leave()
    elif args.dark:
        window.graph_page.expand("inception3a")
        window.view.select("inception3a")
        window.view.set_zoom(0.9)
        window.view.centerOn(window.view.frames["inception3a"])
        shot("dark_palette.png")
    else:
        # The window as it comes up: the sample photo classified in the Classify tab.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (window.images is None or window.images.classify.shown is None):
            wait(None, 500)
        window.view.select("inception4a")
        window.view.centerOn(window.view.boxes["inception4a"])
        shot("window_classify.png")
        # A batch: every sample photo at once, the table given room.
        from explorer.core.model.samples import SAMPLES_DIR

        window.images.classify.classify_paths([SAMPLES_DIR])
        wait(window.images.classify.batch_finished, 180_000)
        shot("classify_batch.png")
        window.images.activation_dock.raise_()
        window.view.select("inception4a")
        shot("window_activations.png")
        window.images.classify_dock.raise_()
        shot("collapsed_graph.png")
        window.graph_page.expand("inception3a")
        window.view.select("inception3a")
        window.view.set_zoom(1.0)
        window.view.centerOn(window.view.frames["inception3a"])
        shot("expanded_block.png")
        if window.paper_table is not None:
            window.show_paper_tab()
            shot("paper_table.png")
            window.show_graph_tab()
        window.graph_page.set_input_size(12)
        window.view.centerOn(window.view.boxes[window.failed_node] if window.failed_node in window.view.boxes
                             else window.view.boxes["input"])
        shot("input_too_small.png")
        window.graph_page.set_input_size(299)
        window.models.set_model("inception_v3")
        wait(window.graph_ready, 120_000)
        wait(window.model_loaded, 120_000)
        window.graph_page.expand("Mixed_7b")
        window.view.select("Mixed_7b")
        window.view.set_zoom(0.9)
        window.view.centerOn(window.view.frames["Mixed_7b"])
        shot("inception_v3_nested_branches.png")
        named_shots(NAMED_SHOTS)
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
