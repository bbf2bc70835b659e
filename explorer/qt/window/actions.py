"""The main window's actions and menus, from one table; the Help menu's shortcut list is read from it.

Each `ActionSpec` names the method it triggers, the window's or, by a dotted path, that of the part of the
window that owns it ("graph_page.fit_to_window"), so menus, toolbar, shortcuts and the "Keyboard shortcuts"
help are one list. Actions are added to the window as well as to their menu: their shortcuts keep working
while presentation mode hides the menu bar.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

Std = QKeySequence.StandardKey


@dataclass(frozen=True)
class ActionSpec:
    key: str  #: the action's name in `window.actions`
    menu: str  #: menu path, "/" between levels: "&File/&Export graph"
    text: str
    method: str  #: the method called when triggered: the window's, or a dotted path from it to its owner's
    shortcut: object = None  #: a key string, a StandardKey, or a tuple of key strings
    tip: str = ""
    toolbar: bool = False  #: also on the graph toolbar


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open_images", "&File", "&Open images…", "images.classify.open_files", Std.Open,
               "Classify image files (or drop them on the window)"),
    ActionSpec("open_folder", "&File", "Open &folder…", "images.classify.open_folder", "Ctrl+Shift+O",
               "Classify every image of a folder"),
    ActionSpec("open_model", "&File", "Open &model…", "models.open_model_dialog", "Ctrl+Shift+M",
               "Any CNN: torchvision:NAME, timm:NAME, a .py file with build(), TorchScript or torch.export"),
    ActionSpec("open_weights", "&File", "Open &weights file…", "models.open_weights_dialog", "Ctrl+Alt+O",
               "Load a .pth / .safetensors state dict into the current model"),
    ActionSpec("retry_download", "&File", "&Retry download", "models.retry_download", None,
               "Download the pretrained weights again"),
    ActionSpec("export_svg", "&File/&Export graph", "As &SVG…", "exports.export_svg_dialog", "Ctrl+Shift+S",
               "Vector drawing, text stays text"),
    ActionSpec("export_png", "&File/&Export graph", "As &PNG…", "exports.export_png_dialog", "Ctrl+Shift+P",
               "Bitmap at a chosen scale"),
    ActionSpec("export_handout", "&File", "Export &handout…", "exports.export_handout_dialog", None,
               "One PDF for a class: graph, paper table, shapes; with an image, its top-5, feature maps, attribution"),
    ActionSpec("quit", "&File", "&Quit", "close", "Ctrl+Q"),
    ActionSpec("paste", "&Edit", "&Paste image", "image_input.paste", Std.Paste,
               "Classify the image on the clipboard (text goes to the text field with the focus)"),
    ActionSpec("cancel_classification", "&Edit", "&Cancel classification", "images.classify.cancel", "Ctrl+."),
    ActionSpec("zoom_in", "&View", "Zoom &in", "view.zoom_in", ("Ctrl+=", "Ctrl++")),
    ActionSpec("zoom_out", "&View", "Zoom &out", "view.zoom_out", "Ctrl+-"),
    ActionSpec("fit", "&View", "&Fit to window", "graph_page.fit_to_window", "Ctrl+0", toolbar=True),
    ActionSpec("expand_all", "&View", "&Expand all blocks", "graph_page.expand_all", "Ctrl+Shift+E", toolbar=True),
    ActionSpec("collapse_all", "&View", "&Collapse all blocks", "graph_page.collapse_all", "Ctrl+Shift+C",
               toolbar=True),
    ActionSpec("find", "&View", "F&ind node…", "graph_page.focus_find", Std.Find),
    ActionSpec("graph_tab", "&View", "&Graph", "show_graph_tab", "Ctrl+1", "The block graph"),
    ActionSpec("paper_tab", "&View", "Paper &table", "show_paper_tab", "Ctrl+2",
               "The paper's table, computed from the model"),
    ActionSpec("full_screen", "&View", "Full &screen", "toggle_full_screen", "F11"),
    ActionSpec("presentation", "&View", "&Presentation mode", "presentation.toggle", "F5",
               "Full screen, large type; arrow keys step through the blocks, Esc leaves"),
    ActionSpec("restore_branches", "&Model/Switched-off &branches", "&Restore all branches",
               "branch_switches.restore", "Ctrl+Shift+R",
               "Switch every branch on again: results are the plain network's (right-click a branch to switch it off)"),
    ActionSpec("compare", "&Compare", "&Compare models…", "compare.open", "Ctrl+Shift+K",
               "Two models side by side, stage by stage, differences highlighted"),
    ActionSpec("factorisation", "&Compare", "&Factorisation…", "compare.open_factorisation", None,
               "What factorising a convolution saves, and where each model does it"),
    ActionSpec("shortcuts", "&Help", "&Keyboard shortcuts", "help_windows.show_shortcuts", "F1"),
    ActionSpec("weights_help", "&Help", "Where &weights are looked for", "help_windows.show_weights_help", None),
    ActionSpec("about", "&Help", "&About", "help_windows.show_about", None),
)

#: Keys of presentation mode, for the shortcut list (the mode owns them while it is on).
PRESENTATION_KEYS = (("→, Space, Page Down, ↓", "next block"), ("←, Backspace, Page Up, ↑", "previous block"),
                     ("Home", "first block"), ("F", "flow mode: light the branches, then the join, one key at a time"),
                     ("+, −", "more or fewer feature maps per branch"),
                     ("D", "data-flow slides of the image on screen, or graph slides"),
                     ("Esc", "leave presentation mode"))


def _sequences(shortcut) -> list[QKeySequence]:
    if shortcut is None:
        return []
    if isinstance(shortcut, tuple):
        return [QKeySequence(s) for s in shortcut]
    if isinstance(shortcut, Std):
        return QKeySequence.keyBindings(shortcut)
    return [QKeySequence(shortcut)]


def _resolve(window, path: str):
    """The method at dotted `path` from `window`, looked up when the action fires: an owner that is not
    built yet (None: the image docks, just after start-up) makes the action do nothing."""
    target = window
    for name in path.split("."):
        if target is None:
            return lambda: None
        target = getattr(target, name)
    return target


def build_actions(window, menu_order=("&File", "&Edit", "&View", "&Model", "&Compare", "&Help")) -> dict[str, QAction]:
    """Create every action of ACTIONS on `window` and its menus (in `menu_order`; menus not in the table,
    such as Model, are created empty for the window to fill). Returns key → QAction; `window.menus`
    gets menu path → QMenu."""
    bar = window.menuBar()
    menus: dict[str, QMenu] = {}
    for name in menu_order:
        menus[name] = bar.addMenu(name)

    def menu(path: str) -> QMenu:
        if path not in menus:
            parent, _, leaf = path.rpartition("/")
            menus[path] = menu(parent).addMenu(leaf) if parent else bar.addMenu(leaf)
        return menus[path]

    actions: dict[str, QAction] = {}
    for spec in ACTIONS:
        m = menu(spec.menu)
        act = QAction(spec.text, window)
        seqs = _sequences(spec.shortcut)
        if seqs:
            act.setShortcuts(seqs)
        if spec.tip:
            act.setStatusTip(spec.tip)
            act.setToolTip(spec.tip)
        act.triggered.connect(lambda _checked=False, path=spec.method: _resolve(window, path)())
        m.addAction(act)
        window.addAction(act)
        actions[spec.key] = act
    window.menus = menus
    return actions


def shortcuts_html(actions: dict[str, QAction]) -> str:
    """The shortcut list of the Help menu: every action with a shortcut, then presentation mode's keys."""
    rows = []
    for spec in ACTIONS:
        act = actions.get(spec.key)
        if act is None or not act.shortcuts():
            continue
        keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in act.shortcuts())
        rows.append((keys, spec.text.replace("&", "").rstrip("…"), spec.menu.replace("&", "").replace("/", " → ")))
    parts = ["<table cellpadding='3'>"]
    parts += [f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(t)}</td><td><i>{html.escape(m)}</i></td></tr>"
              for k, t, m in rows]
    parts.append("<tr><td colspan='3'><br><b>Presentation mode</b></td></tr>")
    parts += [f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(t)}</td><td></td></tr>" for k, t in PRESENTATION_KEYS]
    parts.append("<tr><td colspan='3'><br><b>Graph</b></td></tr>")
    parts += [f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(t)}</td><td></td></tr>" for k, t in (
        ("double-click a block", "open it into its branches / close it"),
        ("right-click a branch or a block", "switch a branch off (zeros or its per-channel mean) or on again"),
        ("drop files or a folder", "classify them"),
    )]
    parts.append("</table>")
    return "".join(parts)
