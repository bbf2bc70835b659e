"""Qt test fixtures: offscreen platform, settings in a temporary folder, windows without downloads."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from PySide6.QtCore import QSettings  # noqa: E402

# The offscreen platform plugin warns about window-manager hints it cannot honour.
OFFSCREEN_NOISE = r"propagateSizeHints|This plugin does not support"

#: The first block graph of a session imports torch and torchvision: allow for a slow cold start.
GRAPH_TIMEOUT_MS = 180_000


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.qt_log_ignore(OFFSCREEN_NOISE))


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory):
    """No test reads or writes the user's real settings."""
    path = tmp_path_factory.mktemp("qsettings")
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(path))
    yield


@pytest.fixture
def settings_path(tmp_path):
    return str(tmp_path / "explorer.ini")


@pytest.fixture
def make_window(qtbot, settings_path):
    """make_window(model=None, weights="none") -> a shown MainWindow whose graph is drawn."""
    from explorer.qt.window.main_window import MainWindow

    made = []

    def make(model=None, weights="none", wait_weights=True, path=None, classify_sample=False):
        settings = QSettings(path or settings_path, QSettings.Format.IniFormat)
        w = MainWindow(model, weights=weights, allow_download=False, settings=settings,
                       classify_sample=classify_sample)
        qtbot.addWidget(w)
        made.append(w)
        if wait_weights:
            with qtbot.waitSignals([w.graph_ready, w.model_loaded], timeout=GRAPH_TIMEOUT_MS, order="strict"):
                w.show()
        else:
            with qtbot.waitSignal(w.graph_ready, timeout=GRAPH_TIMEOUT_MS):
                w.show()
        return w

    yield make
    for w in made:
        if w.images is not None:
            w.images.shutdown()
        w.jobs.cancel_all()
        w.jobs.wait(30000)


@pytest.fixture
def job_runner(qtbot):
    """The one job runner, as the window makes it, for widgets built without a window."""
    from explorer.qt.workers import JobRunner

    runner = JobRunner(None)
    yield runner
    runner.cancel_all()
    assert runner.wait(30000)


@pytest.fixture
def window(make_window):
    return make_window()
