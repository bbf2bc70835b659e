"""The Help menu's windows: keyboard shortcuts (read from the action table), where weights are looked for,
and About."""

from __future__ import annotations

import html
import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

from explorer.qt.screen import fit_to_screen
from explorer.qt.window.actions import shortcuts_html


def _show(parent: QWidget, title: str, text: str) -> QDialog:
    """A text that scrolls in a dialog that fits the screen (the shortcuts list is taller than a laptop's)."""
    box = QDialog(parent)
    box.setWindowTitle(title)
    browser = QTextBrowser(box)
    browser.setHtml(text)
    browser.setOpenExternalLinks(True)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok, box)
    buttons.accepted.connect(box.accept)
    lay = QVBoxLayout(box)
    lay.addWidget(browser)
    lay.addWidget(buttons)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    document = browser.document()
    document.setTextWidth(520)
    fit_to_screen(box, 560, int(document.size().height()) + 90)
    box.open()
    return box


class HelpWindows:
    """The Help menu's windows over `window`."""

    def __init__(self, window):
        self.window = window

    def show_shortcuts(self) -> QDialog:
        return _show(self.window, "Keyboard shortcuts", shortcuts_html(self.window.actions))

    def show_weights_help(self) -> QDialog:
        return _show(self.window, "Where weights are looked for", weights_help_html())

    def show_about(self) -> None:
        QMessageBox.about(self.window, "About Inception Explorer",
                          "<b>Inception Explorer</b><br>Look inside Inception-family convolutional networks:"
                          " block graph, shapes at any input size, the paper's table, presentation mode,"
                          " classification, activations and attributions per branch.")


def weights_help_html() -> str:
    """Where weights come from: torch hub's or the Hugging Face Hub's cache, a download into it, or a
    file the user opens."""
    hub = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    try:  # the folder huggingface_hub itself uses (HF_HUB_CACHE, else HF_HOME/hub)
        from huggingface_hub.constants import HF_HUB_CACHE as hf_cache
    except ImportError:
        hf_cache = os.path.join(os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub")
    return (
        "<p>For a model with published weights the window looks, in order:</p><ol>"
        "<li>in the cache: torchvision's weights (GoogLeNet, Inception v3, any torchvision model opened by"
        f" name) in torch hub's, <code>{html.escape(os.path.join(hub, 'hub', 'checkpoints'))}</code>"
        " (set <code>TORCH_HOME</code> to move it); timm's weights for Inception-v4 and Inception-ResNet-v2"
        f" in the Hugging Face Hub's, <code>{html.escape(hf_cache)}</code> (set <code>HF_HUB_CACHE</code> or"
        " <code>HF_HOME</code>), where timm keeps them too;</li>"
        "<li>online, downloading into that cache (with progress and Cancel; File → Retry download;"
        " <code>HF_HUB_OFFLINE=1</code> keeps the Hugging Face Hub offline);</li>"
        "<li>else the model keeps random weights and says why. Random weights are seeded by the model's"
        " name: the same in every session. A retry that fails again leaves them unchanged and says so.</li></ol>"
        "<p>GoogLeNet as in the paper, BN-Inception and Inception-ResNet-v1 have no published PyTorch"
        " weights in these parameter names. Any model takes a state dict with File → Open weights file…"
        " (.pth / .pt / .bin read with <code>weights_only=True</code>, or .safetensors): it is loaded whole or"
        " not at all.</p>")
