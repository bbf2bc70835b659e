"""Start the explorer window: `main()` shows it at once and loads the model in a worker."""

from __future__ import annotations

import sys
import time

T0 = time.perf_counter()


def main(argv: list[str] | None = None, *, model: str | None = None, weights: str = "auto",
         allow_download: bool = True) -> int:
    """Run the Qt application; returns its exit code.

    With INCEPTION_EXPLORER_BENCH set in the environment, prints the seconds from process start to
    the window shown and to the graph drawn, then quits (used by bench/bench_window.py).
    """
    import os

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from explorer.qt.main_window import APPLICATION, ORGANIZATION, MainWindow

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

        app.processEvents()
        print(f"window_shown_s {since():.3f}", flush=True)
        print(f"torch_imported_at_window {'torch' in sys.modules}", flush=True)

        def drawn(_name: str) -> None:
            app.processEvents()
            print(f"graph_drawn_s {since():.3f}", flush=True)
            QTimer.singleShot(0, window.close)

        window.graph_ready.connect(drawn)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
