"""Any CNN in the window: File → Open model…, the Model menu's Recent section, `--model REF`.

Every expectation comes from the real network: the blocks are torchvision's own residual modules,
the shapes those of a hooked forward of the plain model, the top-5 the engine's on the same model.
"""

import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog

from explorer.core.classify.inference import Classifier
from explorer.core.model.weights import RANDOM_WARNING
from explorer.core.text import fmt_shape
from netutil import UNTRACEABLE_SOURCE

GRAPH_TIMEOUT_MS = 180_000  # the first graph of a session imports torch (as in conftest)

TWO_BRANCH = textwrap.dedent("""
    import torch, torch.nn as nn

    class TwoBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(3, 6, 5, padding=2)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 3, 3, stride=2)
            self.block = TwoBranch()
            self.head = nn.Conv2d(10, 2, 3)

        def forward(self, x):
            return self.head(self.block(self.stem(x)))

    def build():
        return Net()
""")


def real_shapes(model: nn.Module, size) -> dict[str, tuple]:
    """Output shape (without batch) of every module in a real forward of the plain model."""
    shapes = {}
    for name, m in model.named_modules():
        if name:
            m.register_forward_hook(lambda mod, i, o, n=name: shapes.__setitem__(n, tuple(o.shape[1:]))
                                    if isinstance(o, torch.Tensor) else None)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, *size))
    return shapes


def load_file(path):
    """The module a model file's build() returns, as the user's code makes it."""
    scope = {}
    exec(compile(path.read_text(), str(path), "exec"), scope)
    return scope["build"]()


def settle(qtbot, w):
    """Wait until the image docks have built (or given up on) the capture model of the window's model.

    torch.fx patches nn.Module.__call__ process-wide while it traces, so a test's own forward must
    not run while a worker traces the model for the image docks."""
    qtbot.waitUntil(lambda: w.images is not None and w.images.model_key == w.state.result_key.for_model()
                    and w.state.loaded is not None and not w.images.classify.busy
                    and w.session.runner.running("images/capture_model") is None, timeout=GRAPH_TIMEOUT_MS)


def open_and_wait(qtbot, w, ref):
    """Open `ref` and wait for its weights; an error shown instead fails at once, with its message."""
    settle(qtbot, w)
    errors = []
    w.error_shown.connect(errors.append)
    w.models.open_model(ref)
    expected = ref if ref.startswith(("torchvision:", "timm:")) else str(Path(ref).resolve())
    qtbot.waitUntil(lambda: errors or (w.model_ref == expected and w.loaded is not None
                                       and w.loaded.name == w.model_name), timeout=GRAPH_TIMEOUT_MS)
    w.error_shown.disconnect(errors.append)
    assert not errors
    settle(qtbot, w)


def menu_action(menu, text):
    return next(a for a in menu.actions() if a.text() == text)


def test_torchvision_resnet18_opens_with_its_residual_blocks_and_shapes(make_window, qtbot):
    w = make_window()
    open_and_wait(qtbot, w, "torchvision:resnet18")
    assert w.model_name == "torchvision:resnet18" and w.model_ref == "torchvision:resnet18"
    real = torchvision.models.resnet18()
    residual = [n for n, m in real.named_modules() if isinstance(m, torchvision.models.resnet.BasicBlock)]
    assert [b.name for b in w.graph.blocks()] == residual
    assert all(b.kind == "residual" and b.merge == "add" for b in w.graph.blocks())
    # Shapes at the size in the control (the model's native 224) are those of the real forward, and drawn.
    h, width = w.state.input_size.hw
    assert (h, width) == (224, 224)
    shapes = real_shapes(real, (h, width))
    for node in w.graph.nodes()[1:]:
        assert w.trace.nodes[node.name].output_shape == shapes[node.name], node.name
    for name in residual:
        assert fmt_shape(shapes[name]) in w.view.boxes[name].box.lines
    # A block opens into its branches, the shortcut among them.
    w.graph_page.expand("layer1.0")
    assert any("identity" in " ".join(b.box.lines) for b in w.view.boxes.values() if b.box.node == "layer1.0")
    # A new size retraces the opened model.
    w.graph_page.set_input_size(160)
    assert w.trace.nodes["layer4.1"].output_shape == real_shapes(real, (160, 160))["layer4.1"]
    # Random weights, and the window says so; no zoo entry claims to be the model, its Recent entry does.
    assert RANDOM_WARNING in w.weights_bar.text() and w.weights_label.text() == "weights: random"
    assert w.model_combo.currentIndex() == -1 and w.model_combo.placeholderText() == w.spec_title()
    assert [a.data() for a in w.model_actions.actions() if a.isChecked()] == ["torchvision:resnet18"]
    # Back to the zoo: the zoo model is the window's again.
    with qtbot.waitSignal(w.graph_ready, timeout=GRAPH_TIMEOUT_MS):
        w.models.set_model("googlenet")
    assert w.model_ref is None and w.graph.name == "googlenet"


def test_the_dialog_completes_torchvision_names_and_opens_one(make_window, qtbot):
    w = make_window()
    settle(qtbot, w)
    menu_action(w.menuBar().actions()[0].menu(), "Open &model…").trigger()
    dialog = w.models.open_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.open_button.isEnabled()
    qtbot.waitUntil(lambda: "torchvision:resnet18" in dialog.names.stringList(), timeout=60_000)
    listed = set(dialog.names.stringList())
    assert {f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)} <= listed
    qtbot.keyClicks(dialog.edit, "torchvision:resnet18")
    assert dialog.open_button.isEnabled()
    with qtbot.waitSignals([w.model_opened, w.model_loaded], timeout=GRAPH_TIMEOUT_MS, order="strict"):
        qtbot.mouseClick(dialog.open_button, Qt.MouseButton.LeftButton)
    assert w.model_ref == "torchvision:resnet18" and w.graph.name == "torchvision:resnet18"
    assert not dialog.isVisible() and len(w.graph.blocks()) == 8


def test_a_python_file_with_build_shows_its_two_branch_block(make_window, qtbot, tmp_path, monkeypatch):
    path = tmp_path / "mynet.py"
    path.write_text(TWO_BRANCH)
    w = make_window()
    settle(qtbot, w)
    # Through the dialog's Browse… button.
    w.models.open_model_dialog()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    w.models.open_dialog.browse_button.click()
    assert w.models.open_dialog.reference() == str(path)
    with qtbot.waitSignals([w.model_opened, w.model_loaded], timeout=GRAPH_TIMEOUT_MS, order="strict"):
        w.models.open_dialog.open_button.click()
    settle(qtbot, w)
    block = w.graph.node("block")
    real = load_file(path)
    assert block.kind == "inception" and block.merge == "cat"
    assert [b.out_channels for b in block.branches] == [real.block.a.out_channels, real.block.b.out_channels]
    assert [b.all_layers()[0].kernel for b in block.branches] == [real.block.a.kernel_size, real.block.b.kernel_size]
    assert "block" in w.view.boxes
    h, width = w.state.input_size.hw
    shapes = real_shapes(real, (h, width))
    assert w.trace.nodes["head"].output_shape == shapes["head"]
    w.graph_page.expand("block")
    layer_boxes = [b for b in w.view.boxes.values() if b.box.node == "block" and b.box.role == "layer"]
    assert len(layer_boxes) == 2
    assert w.notice.text() == ""  # its data flow was traced


def test_a_failing_build_is_reported_and_the_current_model_stays(make_window, qtbot, tmp_path):
    w = make_window()
    settle(qtbot, w)
    graph, boxes = w.graph, set(w.view.boxes)
    bad = tmp_path / "broken.py"
    bad.write_text("def build():\n    raise RuntimeError('no such layer: conv9')\n")
    with qtbot.waitSignal(w.error_shown, timeout=GRAPH_TIMEOUT_MS) as blocker:
        w.models.open_model(str(bad))
    message = blocker.args[0]
    assert "broken.py" in message and "RuntimeError" in message and "no such layer: conv9" in message
    assert message in w.banner.text() and w.banner.isVisible()
    assert w.model_name == "googlenet" and w.model_ref is None and w.graph is graph
    assert set(w.view.boxes) == boxes and "inception3a" in w.view.boxes
    assert not w.busy.isVisible()
    # Still usable: a new size retraces it, an expansion redraws it.
    w.graph_page.set_input_size(256)
    assert w.trace.nodes["inception3a"].output_shape == (256, 32, 32)
    w.graph_page.expand("inception3a")
    assert any(k.startswith("inception3a/") for k in w.view.boxes)
    # A bad name and a missing file get their own message too.
    with qtbot.waitSignal(w.error_shown, timeout=GRAPH_TIMEOUT_MS) as blocker:
        w.models.open_model("torchvision:resnet9000")
    assert "no classification model 'resnet9000'" in blocker.args[0] and w.graph is graph
    with qtbot.waitSignal(w.error_shown, timeout=5_000) as blocker:
        w.models.open_model(str(tmp_path / "gone.py"))
    assert "does not exist" in blocker.args[0] and w.graph is graph


def test_an_untraceable_forward_shows_the_module_tree_and_why(make_window, qtbot, tmp_path):
    path = tmp_path / "untraceable.py"
    path.write_text(UNTRACEABLE_SOURCE)
    w = make_window()
    open_and_wait(qtbot, w, str(path))
    real = load_file(path)
    assert [n.name for n in w.graph.nodes()] == ["input", *[n for n, _ in real.named_children()]]
    assert w.notice.isVisible() and "cannot be traced" in w.notice.text()
    assert w.graph.dataflow_reason in w.notice.text()  # the engine's reason, verbatim
    h, width = w.state.input_size.hw
    shapes = real_shapes(real, (h, width))
    for name in ("stem", "body", "pool", "fc"):
        assert w.trace.nodes[name].output_shape == shapes[name]
        assert fmt_shape(shapes[name]) in w.view.boxes[name].box.lines
    w.view.select("body")
    assert "data flow unknown" in w.details.toPlainText()
    # Back to a traceable model: the notice goes.
    open_and_wait(qtbot, w, "torchvision:resnet18")
    assert not w.notice.isVisible()


def test_opened_models_are_remembered_in_the_model_menu(make_window, qtbot, tmp_path, settings_path):
    path = tmp_path / "mynet.py"
    path.write_text(TWO_BRANCH)
    w = make_window()
    open_and_wait(qtbot, w, "torchvision:resnet18")
    open_and_wait(qtbot, w, str(path))
    assert w.models.recent_models() == [str(path.resolve()), "torchvision:resnet18"]
    w.save_settings()
    # A new window with the same settings file has them in its Model menu, the latest first.
    w2 = make_window(path=settings_path)
    # The model of the last session is opened again, after the zoo's default is on screen; a .py only once
    # the person says so (it runs code).
    from PySide6.QtWidgets import QMessageBox

    qtbot.waitUntil(lambda: w2.models.run_prompt is not None, timeout=10_000)
    w2.models.run_prompt.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: w2.model_ref == str(path.resolve()) and w2.loaded is not None, timeout=GRAPH_TIMEOUT_MS)
    entries = [a for a in w2.model_menu_binding.recent_actions if a.data()]
    assert [a.data() for a in entries] == [str(path.resolve()), "torchvision:resnet18"]
    assert [a.text() for a in entries] == ["mynet.py", "torchvision:resnet18"]
    assert all(a in w2.model_menu.actions() for a in entries)
    with qtbot.waitSignal(w2.model_opened, timeout=GRAPH_TIMEOUT_MS):
        entries[1].trigger()
    assert w2.model_name == "torchvision:resnet18"
    assert QSettings(settings_path, QSettings.Format.IniFormat).value("recent/models")[0] == "torchvision:resnet18"
    # A file that no longer exists: a message, and it leaves the list.
    path.unlink()
    entry = next(a for a in w2.model_menu_binding.recent_actions if a.data() == str(path.resolve()))
    with qtbot.waitSignal(w2.error_shown, timeout=5_000) as blocker:
        entry.trigger()
    assert "does not exist" in blocker.args[0] and w2.model_name == "torchvision:resnet18"
    assert w2.models.recent_models() == ["torchvision:resnet18"]
    # At most MAX_RECENT are kept.
    from explorer.qt.window.main_window import MAX_RECENT

    for i in range(MAX_RECENT + 3):
        w2.models._add_recent(f"timm:model{i}")
    assert len(w2.models.recent_models()) == MAX_RECENT and w2.models.recent_models()[0] == f"timm:model{MAX_RECENT + 2}"


def test_an_opened_resnet18_classifies_a_dropped_image(make_window, qtbot, tmp_path):
    from PIL import Image

    from tests.netutil import synthetic_batch

    w = make_window()
    open_and_wait(qtbot, w, "torchvision:resnet18")
    qtbot.waitUntil(lambda: w.images.classify.classifier is not None
                    and w.images.classify.classifier.loaded is w.loaded, timeout=120_000)
    img = synthetic_batch(1, 200, torch.Generator().manual_seed(5))[0]
    path = tmp_path / "drop.png"
    Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # PySide6 marks this constructor deprecated
        enter = QDragEnterEvent(QPoint(50, 50), *args)
    QApplication.sendEvent(w, enter)
    assert enter.isAccepted()
    with qtbot.waitSignal(w.images.classify.image_classified, timeout=120_000) as blocker:
        QApplication.sendEvent(w, QDropEvent(QPointF(50, 50), *args))
    result = blocker.args[0]
    [expected] = Classifier(w.loaded, device="cpu").classify([path])
    assert result.ok and len(result.top) == 5
    assert [p.label for p in result.top] == [p.label for p in expected.top]
    assert [p.prob for p in result.top] == pytest.approx([p.prob for p in expected.top], abs=1e-5)
    # ImageNet's names (resnet18's weights enum carries them) and the random-weights badge.
    assert all(p.label in w.loaded.categories for p in result.top) and w.loaded.categories[0] == "tench"
    assert RANDOM_WARNING in w.images.classify.badge.text()
    # Its residual blocks are captured for the activation view.
    qtbot.waitUntil(lambda: w.images.activations.capture is not None, timeout=120_000)
    assert "layer1.0" in w.images.activations.capture.branches


def test_a_reference_given_at_start_is_opened(make_window, qtbot):
    """`inception-explorer gui --model torchvision:resnet18` hands the reference to the window."""
    w = make_window(model="torchvision:resnet18", wait_weights=False)
    qtbot.waitUntil(lambda: w.model_ref == "torchvision:resnet18" and w.loaded is not None
                    and w.loaded.name == w.model_name, timeout=GRAPH_TIMEOUT_MS)
    assert len(w.graph.blocks()) == 8 and w.models.recent_models() == ["torchvision:resnet18"]
    settle(qtbot, w)
