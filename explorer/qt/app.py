"""Start the explorer window: `main()` shows it at once and loads the model in a worker."""

from __future__ import annotations

import sys
import time

T0 = time.perf_counter()


def main(argv: list[str] | None = None, *, model: str | None = None, weights: str = "auto",
         allow_download: bool = True) -> int:
    """Run the Qt application; returns its exit code. model: a zoo name, or any CNN that the window's
    `models.open_model` accepts (torchvision:NAME, timm:NAME, a model file).

    With INCEPTION_EXPLORER_BENCH set in the environment, prints the seconds from process start to
    the window shown, to a graph drawn (the shipped preview, or the live graph where there is no
    preview) and to the engine ready (live graph, any input size), then quits (bench/bench_window.py).
    """
    import os

    from explorer.core.runtime import prepare_torch_runtime

    prepare_torch_runtime()  # before the engine's worker imports torch, as the command line does
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    from explorer.qt.window.main_window import APPLICATION, ORGANIZATION, MainWindow

    argv = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    window = MainWindow(model, weights=weights, allow_download=allow_download)
    window.show()
    if os.environ.get("INCEPTION_EXPLORER_BENCH"):
        start = float(os.environ.get("INCEPTION_EXPLORER_T0", 0)) or None

        def since() -> float:
            return time.time() - start if start else time.perf_counter() - T0

        def drawn(_name: str) -> None:
            app.processEvents()
            print(f"graph_drawn_s {since():.3f}", flush=True)

        def ready(_name: str) -> None:
            app.processEvents()
            print(f"engine_ready_s {since():.3f}", flush=True)
            QTimer.singleShot(0, window.close)

        class FirstPaint(QObject):
            """Reports the window's first paint: the moment a person sees it."""

            def eventFilter(self, obj, event) -> bool:
                if event.type() == QEvent.Type.Paint and not getattr(self, "seen", False):
                    self.seen = True
                    print(f"window_shown_s {since():.3f}", flush=True)
                    torch = sys.modules.get("torch")  # a worker may be importing it right now
                    done = torch is not None and not getattr(getattr(torch, "__spec__", None), "_initializing",
                                                             False)
                    print(f"torch_imported_at_window {done}", flush=True)
                    if window.state.graph is not None:  # the preview, drawn before the window was shown
                        print(f"graph_drawn_s {since():.3f}", flush=True)
                return False

        first_paint = FirstPaint(window)
        window.installEventFilter(first_paint)
        window.graph_drawn.connect(drawn)
        window.graph_ready.connect(ready)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
