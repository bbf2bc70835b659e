"""What the last session left behind never keeps the window from starting, and never runs code unasked:
an absurd remembered input size, a remembered model file of random bytes, a remembered .py model (asked
about first), and the Open model dialog's warning for Python files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from explorer.core.model.zoo import get_spec
from explorer.qt.window.main_window import MainWindow
from tests.qt.conftest import GRAPH_TIMEOUT_MS

PY_MODEL = """
import os, pathlib
pathlib.Path(__file__).with_suffix(".ran").write_text("ran")
import torch.nn as nn
def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
"""


@pytest.fixture(autouse=True)
def _closed(qtbot):
    """Every window made here is shut down as conftest's make_window does it."""
    yield
    for w in _made:
        if w.images is not None:
            w.images.shutdown()
        w.jobs.cancel_all()
        w.jobs.wait(30000)
    _made.clear()


_made: list[MainWindow] = []


def _window(qtbot, path, model=None, **kw) -> MainWindow:
    w = MainWindow(model, weights="none", allow_download=False, settings=QSettings(str(path), QSettings.Format.IniFormat),
                   classify_sample=False, **kw)
    qtbot.addWidget(w)
    _made.append(w)
    with qtbot.waitSignal(w.graph_ready, timeout=GRAPH_TIMEOUT_MS):
        w.show()
    return w


def _saved(tmp_path, **values) -> Path:
    path = tmp_path / "explorer.ini"
    s = QSettings(str(path), QSettings.Format.IniFormat)
    for key, value in values.items():
        s.setValue(key.replace("__", "/"), value)
    s.sync()
    return path


@pytest.mark.parametrize("height", ["99999999999", "-5", "0", "inf", "1e400", "banana"])
def test_an_absurd_remembered_size_gives_the_models_own(qtbot, tmp_path, height):
    w = _window(qtbot, _saved(tmp_path, input__height=height, input__width="99999999999", input__batch="10**9"))
    native = get_spec("googlenet").native_size
    assert (w.state.input_size.height, w.state.input_size.width, w.state.input_size.batch) == (*native, 1)


def test_a_remembered_model_of_random_bytes_is_one_message_and_googlenet_stays(qtbot, tmp_path):
    bad = tmp_path / "model.pt2"
    bad.write_bytes(bytes(range(256)) * 40)
    w = _window(qtbot, _saved(tmp_path, model__ref=str(bad)))
    qtbot.waitUntil(lambda: "model.pt2" in w.banner.text(), timeout=60_000)
    message = w.banner.text()
    assert "model.pt2" in message and "not a TorchScript or torch.export file" in message and "\n" not in message
    assert "Traceback" not in message and w.state.model == "googlenet"


def test_a_remembered_python_model_is_not_run_until_the_person_says_so(qtbot, tmp_path):
    py = tmp_path / "mynet.py"
    py.write_text(PY_MODEL)
    ran = py.with_suffix(".ran")
    settings = _saved(tmp_path, model__ref=str(py))

    w = _window(qtbot, settings)
    qtbot.waitUntil(lambda: w.models.run_prompt is not None and w.models.run_prompt.isVisible(), timeout=10_000)
    assert "mynet.py" in w.models.run_prompt.text() and "runs its code" in w.models.run_prompt.text()
    assert not ran.exists() and w.state.model == "googlenet"
    w.models.run_prompt.button(QMessageBox.StandardButton.No).click()
    assert not ran.exists() and w.models.run_prompt is None
    assert QSettings(str(settings), QSettings.Format.IniFormat).value("model/ref") == "googlenet"

    settings = _saved(tmp_path, model__ref=str(py))
    w = _window(qtbot, settings)
    qtbot.waitUntil(lambda: w.models.run_prompt is not None and w.models.run_prompt.isVisible(), timeout=10_000)
    with qtbot.waitSignal(w.model_opened, timeout=GRAPH_TIMEOUT_MS):
        w.models.run_prompt.button(QMessageBox.StandardButton.Yes).click()
    assert ran.exists() and w.state.model_ref == str(py.resolve())


def test_a_python_model_named_on_the_command_line_runs_without_asking(qtbot, tmp_path):
    py = tmp_path / "mynet.py"
    py.write_text(PY_MODEL)
    w = _window(qtbot, tmp_path / "s.ini", model=str(py))
    qtbot.waitUntil(lambda: w.state.model_ref == str(py.resolve()), timeout=GRAPH_TIMEOUT_MS)
    assert py.with_suffix(".ran").exists() and w.models.run_prompt is None


def test_the_open_model_dialog_says_a_python_file_is_run(qtbot, monkeypatch, job_runner):
    import explorer.qt.window.open_model_dialog as open_model_dialog
    from explorer.core.session.session import Session

    session = Session(runner=job_runner)
    session.model_names = ("torchvision:resnet18",)  # listed already: no worker
    dialog = open_model_dialog.OpenModelDialog(session=session)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.edit.setText("torchvision:resnet18")
    assert not dialog.code_warning.isVisible()
    dialog.edit.setText("/home/me/net.py")
    assert dialog.code_warning.isVisible() and "runs its code" in dialog.code_warning.text()
