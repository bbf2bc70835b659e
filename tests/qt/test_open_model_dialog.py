"""The Open model dialog's keyboard path: one Enter opens, with or without the completer's popup."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

import explorer.qt.window.open_model_dialog as open_model_dialog

NAMES = ["torchvision:resnet18", "torchvision:resnet34", "torchvision:googlenet"]


@pytest.fixture
def dialog(qtbot, monkeypatch, job_runner):
    from explorer.core.session.session import Session

    session = Session(runner=job_runner)
    session.model_names = tuple(NAMES)  # listed already: no torchvision import
    d = open_model_dialog.OpenModelDialog(session=session)
    qtbot.addWidget(d)
    d.show()
    qtbot.waitExposed(d)
    d.edit.setFocus()
    return d


@pytest.mark.parametrize("highlight", [False, True], ids=["typed", "highlighted"])
def test_one_enter_opens_while_the_completer_popup_is_shown(dialog, qtbot, highlight):
    chosen = []
    dialog.model_chosen.connect(chosen.append)
    qtbot.keyClicks(dialog.edit, "resnet1")
    popup = dialog.edit.completer().popup()
    assert popup.isVisible()
    # While the popup is shown Qt delivers keys to it (the active popup), not to the line edit.
    assert QApplication.activePopupWidget() is popup
    if highlight:
        qtbot.keyClick(popup, Qt.Key.Key_Down)
    qtbot.keyClick(QApplication.activePopupWidget(), Qt.Key.Key_Return)
    assert chosen == ["torchvision:resnet18" if highlight else "resnet1"]
    assert not dialog.isVisible() and not popup.isVisible()


def test_enter_without_a_popup_opens_the_typed_reference(dialog, qtbot):
    chosen = []
    dialog.model_chosen.connect(chosen.append)
    dialog.edit.setText("timm:inception_v4")  # no completion matches: no popup
    qtbot.keyClick(dialog.edit, Qt.Key.Key_Return)
    assert chosen == ["timm:inception_v4"] and not dialog.isVisible()
