"""The Compare menu: one non-modal Compare window per main window, on its compare or factorisation tab."""

from __future__ import annotations

from explorer.core.model.zoo import model_names


class CompareMenu:
    """Opens `window`'s Compare window, offering the models opened by reference (the current one, the recent)."""

    def __init__(self, window):
        self.window = window
        self.compare_window = None  #: made on first use, then shown again

    def open(self, tab: int = 0):
        """Show the Compare window on tab 0 (compare) or 1 (factorisation); returns it."""
        from explorer.qt.shapes.compare_window import CompareWindow

        w = self.window
        opened = [r for r in [w.model_ref, *w.models.recent_models()] if r and r not in model_names()]
        if self.compare_window is None:
            self.compare_window = CompareWindow(w.settings, w.model_name, w.state.input_size.hw, parent=w,
                                                opened=list(dict.fromkeys(opened)), session=w.session)
        else:
            self.compare_window.add_models(opened)
        self.compare_window.show_tab(tab)
        self.compare_window.show()
        self.compare_window.raise_()
        self.compare_window.activateWindow()
        return self.compare_window

    def open_factorisation(self):
        return self.open(1)

    def shutdown(self) -> None:
        """Stop the Compare window's jobs and close it (the main window is closing)."""
        if self.compare_window is not None:
            self.compare_window.shutdown()
            self.compare_window.close()
