"""The Model menu, bound to the ExplorerState: the zoo's models, then a Recent section of opened models
(any CNN), then Open model… and Clear recent. The current model's entry is checked, an opened one too.

Signals
-------
zoo_model_chosen(str)    a zoo model's entry was chosen (its name)
reference_chosen(str)    a Recent entry was chosen (the reference it was opened from)
open_requested()         Open model… was chosen
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu

from explorer.core.session.state import ExplorerState
from explorer.core.model.zoo import get_spec, model_names


class ModelMenu(QObject):
    zoo_model_chosen = Signal(str)
    reference_chosen = Signal(str)
    open_requested = Signal()

    def __init__(self, menu: QMenu, state: ExplorerState, parent=None):
        super().__init__(parent)
        self.menu, self.state = menu, state
        self.group = QActionGroup(self)
        self.group.setExclusive(True)
        for name in model_names():
            act = QAction(get_spec(name).title.replace("&", "&&"), menu, checkable=True)  # "Ioffe & Szegedy"
            act.setData(name)
            act.triggered.connect(lambda _checked=False, n=name: self.zoo_model_chosen.emit(n))
            self.group.addAction(act)
            menu.addAction(act)
        self.recent_actions: list[QAction] = []
        self.rebuild()
        state.connect("recent", lambda _refs: self.rebuild())
        state.connect("model", lambda _name: self.sync())
        state.connect("model_ref", lambda _ref: self.sync())

    def rebuild(self) -> None:
        """Recent: one entry per opened model (the latest first), then Open model… and Clear recent."""
        from explorer.core.model.anycnn import is_file_reference

        for act in self.recent_actions:
            self.menu.removeAction(act)
            if act.actionGroup() is not None:
                act.actionGroup().removeAction(act)
            act.deleteLater()
        self.recent_actions = [self.menu.addSection("Recent")]
        for ref in self.state.recent:
            act = QAction(Path(ref).name if is_file_reference(ref) else ref, self.menu, checkable=True)
            act.setData(ref)
            act.setStatusTip(ref)
            act.setToolTip(ref)
            act.triggered.connect(lambda _checked=False, r=ref: self.reference_chosen.emit(r))
            self.group.addAction(act)
            self.menu.addAction(act)
            self.recent_actions.append(act)
        more = [QAction("Open &model…", self.menu), QAction("Clear recent", self.menu)]
        more[0].triggered.connect(self.open_requested.emit)
        more[1].triggered.connect(lambda: setattr(self.state, "recent", ()))
        more[1].setEnabled(len(self.recent_actions) > 1)
        self.recent_actions.append(self.menu.addSeparator())
        for act in more:
            self.menu.addAction(act)
            self.recent_actions.append(act)
        self.sync()

    def sync(self) -> None:
        """Check the current model's entry (an entry chosen but not opened is unchecked again)."""
        current = self.state.model_ref or self.state.model
        for act in self.group.actions():
            act.setChecked(act.data() == current)
