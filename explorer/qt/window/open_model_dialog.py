"""The "Open model" dialog: any CNN by name (torchvision:NAME, timm:NAME) or from a file.

The dialog only picks a reference; the window opens it in a worker and reports what went wrong.
torchvision's model list, for completion, is listed by the session on a worker the first time the dialog is
shown (it imports torchvision) and kept for the rest of the session.

Signals
-------
model_chosen(str)   the user accepted the dialog with this reference
names_loaded()      the completion list has torchvision's names in it
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QStringListModel, Qt, Signal
from PySide6.QtWidgets import (
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)
from shiboken6 import isValid

from explorer.core.session import events as ev

MODEL_FILE_FILTER = ("Models (*.py *.ts *.pt *.pt2 *.jit);;Python file with build() (*.py);;"
                     "TorchScript (*.ts *.pt *.jit);;torch.export (*.pt2);;All files (*)")
HELP = ("A torchvision or timm model by name — <tt>torchvision:resnet18</tt>, <tt>timm:inception_v4</tt> — or a"
        " file: a Python file whose <tt>build()</tt> returns an <tt>nn.Module</tt> (it is run, like any script"
        " you open), a TorchScript <tt>.ts</tt>/<tt>.pt</tt> or a <tt>torch.export</tt> <tt>.pt2</tt>.")

PY_WARNING = ("Opening a .py file runs its code with your permissions, as any script you start would: open"
              " only files you trust. Weight files and TorchScript / torch.export files are read, never run.")

class OpenModelDialog(QDialog):
    """A text field with completion, a Browse… button for model files, Open and Cancel."""

    model_chosen = Signal(str)
    names_loaded = Signal()

    def __init__(self, parent=None, *, session, recent: list[str] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Open model")
        self.session = session  # lists torchvision's names, once
        self.recent = list(recent or [])
        self.start_dir = next((str(Path(r).parent) for r in self.recent if Path(r).is_absolute()), "")

        intro = QLabel(HELP, self)
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.RichText)
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText("torchvision:resnet18, timm:NAME, or a .py / .ts / .pt / .pt2 file")
        self.edit.setClearButtonEnabled(True)
        self.edit.setMinimumWidth(420)
        self.names = QStringListModel(self.recent, self)
        completer = QCompleter(self.names, self.edit)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.edit.setCompleter(completer)
        # The popup grabs the keyboard while it is shown and the completer swallows Return there, so
        # the first Enter would only pick the completion. Filters run last-installed first: this one
        # sees Return before the completer does and opens at once.
        completer.popup().installEventFilter(self)
        self.browse_button = QPushButton("Browse…", self)
        self.browse_button.clicked.connect(self.browse)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel,
                                        self)
        self.open_button = self.buttons.button(QDialogButtonBox.StandardButton.Open)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.edit.textChanged.connect(self._update_button)
        #: Shown while the reference is a Python file: opening it runs it.
        self.code_warning = QLabel(PY_WARNING, self)
        self.code_warning.setWordWrap(True)
        self.code_warning.setStyleSheet("color: #a33;")

        row = QHBoxLayout()
        row.addWidget(self.edit, 1)
        row.addWidget(self.browse_button)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(row)
        lay.addWidget(self.code_warning)
        lay.addWidget(self.buttons)
        self._update_button()
        self._load_names()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        popup = self.edit.completer().popup()
        if (watched is popup and event.type() == QEvent.Type.KeyPress
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)):
            index = popup.currentIndex()
            if index.isValid():  # a highlighted completion is what the user chose
                self.edit.setText(index.data(self.edit.completer().completionRole()))
            popup.hide()
            self.accept()
            return True
        return super().eventFilter(watched, event)

    def reference(self) -> str:
        return self.edit.text().strip()

    def _update_button(self) -> None:
        self.open_button.setEnabled(bool(self.reference()))
        self.code_warning.setVisible(self.reference().lower().endswith(".py"))

    def _load_names(self) -> None:
        session, listener = self.session, self._on_names
        session.on(ev.ModelNamesListed, listener)
        self.destroyed.connect(lambda *_: session.off(ev.ModelNamesListed, listener))
        session.list_model_names()

    def _on_names(self, event: ev.ModelNamesListed) -> None:
        if isValid(self):  # the dialog may have been closed and deleted while the list loaded
            self._set_names(list(event.names))

    def _set_names(self, names: list[str]) -> None:
        self.names.setStringList(list(dict.fromkeys(self.recent + names)))
        self.names_loaded.emit()

    def browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model file", self.start_dir, MODEL_FILE_FILTER)
        if path:
            self.edit.setText(path)

    def accept(self) -> None:
        if not self.reference():
            return
        super().accept()
        self.model_chosen.emit(self.reference())
