"""Branches switched off from the window (issue 26): the graph's right-click menu, the Model → Branches menu, the
strip that says the results are for a modified network, and the graph's marks.

A right-click on a branch of an opened block offers "Switch inception4a branch 2 off" (or on); on a closed block,
one entry per branch. The session (`Session.switch_branch`) writes the state's `branches_off`, which is part of the
results' key: what the plain network made goes and the image on screen is classified again. While any branch is
off, `BranchesOffBar` above the graph says which, what they became and that the top-5, the activations and the
attributions are the modified network's, with Restore; the graph draws those branches greyed and dashed with an
"off" tag. Model → Switched-off branches holds Restore all branches (Ctrl+Shift+R) and the mode: zeros or per-channel mean.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QPoint, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QPushButton

from explorer.core.text import KNOCKOUT_MODE_WORDS, fmt_branch, fmt_branches_off
from explorer.qt.panels import Banner

#: What the strip adds to the branches it names.
MODIFIED = "the top-5, activations and attributions are for the modified network"
#: The modes as the menu offers them.
MODE_TEXTS = {"zero": "Off branches give &zeros", "mean": "Off branches give their per-channel &mean"}


def branch_of_key(key: str) -> tuple[str, int] | None:
    """(block, branch_index) of a box key inside an opened block ("inception4a/b1/l0" → ("inception4a", 1))."""
    m = re.match(r"^(.+?)/b(\d+)(?:/|$)", key)
    return (m.group(1), int(m.group(2))) if m else None


def off_text(branches, mode: str) -> str:
    """The strip's words: 'inception4a branch 2 off (zeros) — the top-5, … are for the modified network'."""
    return f"{fmt_branches_off(branches, mode)} — {MODIFIED}" if branches else ""


class BranchesOffBar(Banner):
    """The strip above the graph while branches are off: which, what they became, that results are the modified
    network's, and Restore."""

    restore_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("warning", parent)
        self.restore = QPushButton("Restore all branches", self)
        self.restore.setToolTip("Switch every branch on again: the plain network (Ctrl+Shift+R)")
        self.restore.clicked.connect(self.restore_requested)
        self.layout().addWidget(self.restore)

    def show_off(self, branches, mode: str) -> None:
        text = off_text(branches, mode)
        self.set_message(f"<b>⚠ {text.split(' — ')[0]}</b> — {MODIFIED}" if text else None)


class BranchSwitches:
    """The window's controls of the branches switched off (see the module docstring)."""

    def __init__(self, window):
        self.window = window
        self.state, self.session = window.state, window.session
        page = window.graph_page
        self.bar = BranchesOffBar(window)
        page.add_strip(self.bar)
        self.bar.restore_requested.connect(self.restore)
        page.view.context_requested.connect(self.show_menu)
        self.mode_group = QActionGroup(window)
        self.mode_actions: dict[str, QAction] = {}
        for mode, text in MODE_TEXTS.items():
            act = QAction(text, window, checkable=True)
            act.setStatusTip(f"A switched-off branch's output becomes {KNOCKOUT_MODE_WORDS[mode]}"
                             + (" over the image (the block keeps its statistics)" if mode == "mean" else ""))
            act.triggered.connect(lambda _checked=False, mode=mode: self.session.set_knockout_mode(mode))
            self.mode_group.addAction(act)
            self.mode_actions[mode] = act
        menu = window.menus.get("&Model/Switched-off &branches")
        if menu is not None:
            menu.addSeparator()
            for act in self.mode_actions.values():
                menu.addAction(act)
        self.state.connect("branches_off", lambda _off: self.sync())
        self.state.connect("knockout_mode", lambda _mode: self.sync())
        self.sync()

    def sync(self) -> None:
        """The strip, the graph's marks, the mode's check and Restore follow the state."""
        st = self.state
        self.bar.show_off(st.branches_off, st.knockout_mode)
        self.window.graph_page.view.set_branches_off(st.branches_off)
        self.mode_actions[st.knockout_mode].setChecked(True)
        restore = self.window.actions.get("restore_branches") if isinstance(self.window.actions, dict) else None
        if restore is not None:
            restore.setEnabled(bool(st.branches_off))

    def restore(self) -> None:
        """Every branch on again (Model → Switched-off branches → Restore all branches, the strip's button)."""
        self.session.restore_branches()

    def switch(self, block: str, branch_index: int, on: bool) -> None:
        try:
            self.session.switch_branch(block, branch_index, on)
        except ValueError as e:
            self.window.show_status(str(e), 6000)

    def branches_at(self, key: str) -> tuple[str, list[int]] | None:
        """(block, the branch indices a right-click on box `key` offers): one inside an opened block, every one on
        a closed block, its header, its join or its frame; None elsewhere."""
        graph = self.state.graph
        if graph is None or getattr(graph, "is_preview", False):
            return None
        found = branch_of_key(key)
        if found is not None and found[0] in graph.graph and graph.node(found[0]).is_block:
            return found[0], [found[1]]
        item = self.window.graph_page.view.boxes.get(key)
        node = item.box.node if item is not None else key
        if node in graph.graph and graph.node(node).is_block and graph.node(node).branches:
            return node, list(range(len(graph.node(node).branches)))
        return None

    def menu_for(self, key: str) -> QMenu | None:
        """The right-click menu of box `key`: switch its branch (or each of its block's) off or on, the mode,
        Restore all branches."""
        at = self.branches_at(key)
        if at is None:
            return None
        block, indices = at
        node = self.state.graph.node(block)
        menu = QMenu(self.window)
        for k in indices:
            off = (block, k) in self.state.branches_off
            label = getattr(node.branches[k], "label", "") or ""
            name = f"{block} {fmt_branch(k)}" + (f" ({label})" if label and len(indices) > 1 else "")
            act = menu.addAction(f"Switch {name} {'on' if off else 'off'}")
            act.triggered.connect(lambda _checked=False, k=k, off=off: self.switch(block, k, on=off))
        menu.addSeparator()
        for act in self.mode_actions.values():
            menu.addAction(act)
        restore = menu.addAction("Restore all branches")
        restore.setEnabled(bool(self.state.branches_off))
        restore.triggered.connect(self.restore)
        return menu

    def show_menu(self, key: str, where: QPoint) -> None:
        menu = self.menu_for(key)
        if menu is not None:
            menu.exec(where)
            menu.deleteLater()
