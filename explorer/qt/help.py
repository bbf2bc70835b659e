"""The Help menu's windows: keyboard shortcuts (read from the action table), where weights are looked for,
and About."""

from __future__ import annotations

import html
import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from explorer.qt.actions import shortcuts_html


def _show(parent: QWidget, title: str, text: str) -> QMessageBox:
    box = QMessageBox(parent)
    box.setWindowTitle(title)
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(text)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def show_shortcuts(window) -> QMessageBox:
    return _show(window, "Keyboard shortcuts", shortcuts_html(window.actions))


def show_weights_help(window) -> QMessageBox:
    return _show(window, "Where weights are looked for", weights_help_html())


def show_about(window) -> None:
    QMessageBox.about(window, "About Inception Explorer",
                      "<b>Inception Explorer</b><br>Look inside Inception-family convolutional networks:"
                      " block graph, shapes at any input size, the paper's table, presentation mode,"
                      " classification, activations and attributions per branch.")


def weights_help_html() -> str:
    """Where weights come from: the torch hub cache, a download into it, or a file the user opens."""
    hub = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return (
        "<p>For a model with published weights (torchvision's GoogLeNet and Inception v3, and any torchvision"
        " model opened by name) the window looks, in order:</p><ol>"
        f"<li>in the torch hub cache: <code>{html.escape(os.path.join(hub, 'hub', 'checkpoints'))}</code>"
        " (set <code>TORCH_HOME</code> to move it);</li>"
        "<li>online, downloading into that cache (with progress and Cancel; File → Retry download);</li>"
        "<li>else the model keeps random weights and says why.</li></ol>"
        "<p>timm models use timm's own cache. Any model takes a state dict with File → Open weights file…"
        " (.pth / .pt / .bin read with <code>weights_only=True</code>, or .safetensors): it is loaded whole or"
        " not at all.</p>")
