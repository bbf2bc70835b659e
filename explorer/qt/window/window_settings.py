"""The main window's remembered settings, bound to its ExplorerState: read at start-up, written on each change.

Kept: the current model (a zoo name, or the reference an opened model came from), the input size and
whether H and W are linked, the expanded blocks per model, the recently opened models, and the window's
geometry and dock layout (versioned: a layout saved by an older window is not restored).
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings

from explorer.core.shapes.trace import MAX_BATCH, MAX_INPUT_SIDE
from explorer.core.session.state import ExplorerState, InputSize

ORGANIZATION = "InceptionExplorer"
APPLICATION = "Inception Explorer"
DEFAULT_MODEL = "googlenet"
#: How many opened models the Model menu's Recent section remembers.
MAX_RECENT = 8
#: Bumped when the docks change: a layout saved by an older version is then not restored.
DOCK_LAYOUT_VERSION = 3


def default_settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return default


def _bounded(value, default: int, largest: int) -> int:
    """`value` as an int from 1 to `largest`, else `default`."""
    n = _int(value, default)
    return n if 1 <= n <= largest else default


class WindowSettings:
    """Reads the saved session into an ExplorerState and writes the state's changes back."""

    def __init__(self, settings: QSettings, state: ExplorerState):
        self.settings, self.state = settings, state

    # -- reading -------------------------------------------------------------------------------

    def saved_model(self) -> str:
        """The model of the last session: a zoo name or an opened model's reference."""
        return str(self.settings.value("model/ref", self.settings.value("model/name", DEFAULT_MODEL)) or DEFAULT_MODEL)

    def saved_input_size(self, native: tuple[int, int]) -> tuple[InputSize, bool]:
        s = self.settings
        # A hand-edited or damaged file must never keep the window from starting: out of range is the default.
        h = _bounded(s.value("input/height"), native[0], MAX_INPUT_SIDE)
        w = _bounded(s.value("input/width"), native[1], MAX_INPUT_SIDE)
        n = _bounded(s.value("input/batch"), 1, MAX_BATCH)
        linked = str(s.value("input/linked", "true")).lower() == "true"
        return InputSize(h, w, n), linked and h == w

    def saved_expanded(self, model: str) -> list[str]:
        value = self.settings.value(f"expanded/{model}", "")
        if isinstance(value, (list, tuple)):
            value = ",".join(value)
        return [v for v in str(value or "").split(",") if v]

    def saved_recent(self) -> tuple[str, ...]:
        value = self.settings.value("recent/models", [])
        if isinstance(value, str):
            value = [value] if value else []
        return tuple(str(v) for v in (value or []))[:MAX_RECENT]

    def restore_window(self, window) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            window.restoreGeometry(geometry)
        self.restore_docks(window)

    def restore_docks(self, window) -> None:
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            window.restoreState(state, DOCK_LAYOUT_VERSION)

    # -- writing -------------------------------------------------------------------------------

    def bind(self) -> None:
        """Write every change of the remembered properties as it happens."""
        st = self.state
        st.connect("input_size", self._save_size)
        st.connect("size_linked", lambda linked: self.settings.setValue("input/linked", linked))
        st.connect("model", lambda _name: self._save_model())
        st.connect("model_ref", lambda _ref: self._save_model())
        st.connect("expanded", lambda _expanded: self.save_expanded())
        st.connect("recent", lambda refs: self.settings.setValue("recent/models", list(refs)[:MAX_RECENT]))

    def _save_size(self, size: InputSize) -> None:
        self.settings.setValue("input/height", size.height)
        self.settings.setValue("input/width", size.width)
        self.settings.setValue("input/batch", size.batch)

    def _save_model(self) -> None:
        st = self.state
        if st.model is None:
            return
        ref = st.model_ref or st.model
        self.settings.setValue("model/ref", ref)
        if st.model_ref is None:
            self.settings.setValue("model/name", st.model)

    def save_expanded(self) -> None:
        """The expanded blocks of the current model (not presentation mode's, which are the talk's)."""
        st = self.state
        if st.model is None or st.presenting or st.graph is None:
            return
        self.settings.setValue(f"expanded/{st.model_ref or st.model}", ",".join(sorted(st.expanded)))

    def save_window(self, window) -> None:
        self.settings.setValue("window/geometry", window.saveGeometry())
        self.settings.setValue("window/state", window.saveState(DOCK_LAYOUT_VERSION))
        self.save_expanded()
        self._save_model()
        self._save_size(self.state.input_size)
        self.settings.setValue("input/linked", self.state.size_linked)
        self.settings.sync()
