"""The classification panel, driven through its public API and simulated drops (pytest-qt, offscreen).

Every expectation comes from the engine: the same files go through `Classifier.classify` and the
panel must show exactly that (labels, probabilities, errors). The network is GoogLeNet with
calibrated random weights saved to a file, so predictions differ from image to image.
"""

import csv
import hashlib
import io
import json
import threading
import warnings
from pathlib import Path

import pyqtgraph as pg
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication

from explorer.core.classify.images import expand_inputs
from explorer.core.classify.results import CSV_COLUMNS, RECORD_KEYS
from explorer.core.classify.inference import Classifier
from explorer.core.model.loading import load_model
from explorer.core.model.weights import RANDOM_WARNING
from explorer.qt.classify.classify_panel import PASTED_NAME, ClassifyPanel, ShownImage
from explorer.qt.results_table import COL_ERROR, COL_FILE, COL_PROB, COL_TOP1, RESULT_ROLE
from explorer.qt.workers import JobRunner
from tests.netutil import bad_corpus, calibrated_state_dict, synthetic_batch, write_weights
from tests.vocabulary import assert_one_percent_style

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = write_weights(calibrated_state_dict("googlenet"), tmp_path_factory.mktemp("w") / "googlenet.pth")
    return load_model("googlenet", weights=path, allow_download=False)


@pytest.fixture(scope="module")
def engine(loaded):
    return Classifier(loaded, device="cpu")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Six varied images (JPEG and PNG, 64-200 px) in a folder of their own."""
    folder = tmp_path_factory.mktemp("good")
    batch = synthetic_batch(6, 200, torch.Generator().manual_seed(3))
    paths = []
    for i, img in enumerate(batch):
        pil = Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
        if i % 2:
            pil = pil.resize((64 + 20 * i, 200 - 10 * i))
        path = folder / (f"img{i}.jpg" if i % 2 == 0 else f"img{i}.png")
        pil.save(path)
        paths.append(path)
    return paths


def make_panel(qtbot, loaded=None, samples=(), **kwargs):
    # A runner of its own, as the window would hand it (kept by the panel's lanes, as long as the panel).
    panel = ClassifyPanel(runner=JobRunner(None), samples=None if samples is None else list(samples))
    qtbot.addWidget(panel)
    panel.resize(900, 700)
    panel.show()
    if loaded is not None:
        panel.set_model(loaded, device="cpu", **kwargs)
        qtbot.waitUntil(lambda: panel.classifier is not None and not panel.busy, timeout=TIMEOUT_MS)
    return panel


@pytest.fixture
def panel(qtbot, loaded):
    p = make_panel(qtbot, loaded)
    yield p
    assert p.shutdown(30000)


def url_mime(*paths) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def assert_same_predictions(shown, expected, abs_tol=1e-5):
    assert [label for label, _ in shown] == [p.label for p in expected.top]
    assert [prob for _, prob in shown] == pytest.approx([p.prob for p in expected.top], abs=abs_tol)


def drawn(panel):
    """(label, probability) pairs as drawn: the left axis' tick labels and the bars' widths."""
    chart = panel.result_view.chart
    widths = list(chart.bars.opts["width"])
    ticks = chart.getPlotItem().getAxis("left")._tickLevels[0]
    return [(label, float(w)) for (_, label), w in zip(ticks, widths)]


def percent_labels(chart) -> list[str]:
    """The percentages written beside the bars, top-1 first: the chart's visible text items, top to bottom."""
    items = [i for i in chart.getPlotItem().items if isinstance(i, pg.TextItem) and i.isVisible()]
    return [i.toPlainText() for i in sorted(items, key=lambda i: i.pos().y())]


def choose_device(panel, device: str) -> None:
    """Pick `device` in the panel's device combo, as a person does."""
    index = panel.device_combo.findData(device)
    assert index >= 0 and index != panel.device_combo.currentIndex()
    panel.device_combo.setCurrentIndex(index)


def test_drop_one_jpeg_shows_the_engines_top5(qtbot, panel, engine, images):
    path = images[0]
    with qtbot.waitSignal(panel.image_shown, timeout=TIMEOUT_MS) as shown_sig:
        with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS) as blocker:
            assert panel.handle_drop(url_mime(path))
    result = blocker.args[0]
    [expected] = engine.classify([path])
    assert result.source == str(path) and result.ok
    assert len(result.top) == 5
    assert_same_predictions(panel.result_view.chart.predictions, expected)
    assert_same_predictions(drawn(panel), expected)
    assert percent_labels(panel.result_view.chart)[0] == f"{expected.top[0].prob * 100:.1f} %"
    assert len(percent_labels(panel.result_view.chart)) == 5
    assert panel.state.classification is result
    timings = panel.result_view.timings.text()
    for word in ("decode", "preprocess", "forward", "on cpu"):
        assert word in timings
    assert panel.message.text() == ""
    qtbot.waitUntil(lambda: not panel.busy, timeout=5000)  # the job's end follows its last output
    # The image is on show and handed on with its network input (the engine's preprocessing).
    shown = shown_sig.args[0]
    assert isinstance(shown, ShownImage) and shown.image.size == (200, 200)
    assert torch.allclose(shown.x[0], engine.preprocess(path))
    assert shown.capture is None  # no block graph given: nothing to probe
    # The picture replaced the "Classifying img0.jpg…" placeholder.
    assert panel.state.shown_image is shown and panel.result_view.image.text() == ""


def test_a_real_drop_event_is_handled(qtbot, panel, engine, images):
    path = images[1]  # a PNG
    mime = url_mime(path)
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with warnings.catch_warnings():
        # PySide6 6.12 marks QDragEnterEvent's only constructor (it takes a QPoint) as deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(50, 50), *args)
    QApplication.sendEvent(panel, enter)  # Qt delivers a drop only to a widget that accepted the drag
    assert enter.isAccepted()
    event = QDropEvent(QPointF(50, 50), *args)
    with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS):
        QApplication.sendEvent(panel, event)
    assert event.isAccepted()
    [expected] = engine.classify([path])
    assert_same_predictions(drawn(panel), expected)


def test_each_bad_file_dropped_alone_gets_a_clear_message(qtbot, panel, tmp_path):
    corpus = bad_corpus(tmp_path)
    for name, (path, word) in corpus.items():
        if path.is_dir():
            continue  # a folder is a batch: see test_a_folder_without_images
        with qtbot.waitSignal(panel.failed, timeout=TIMEOUT_MS) as blocker:
            panel.handle_drop(url_mime(path))
        message = blocker.args[0]
        assert name in message and word.lower() in message.lower(), message
        assert panel.message.text() == message
        assert panel.result_view.chart.predictions == []
        assert word.lower() in panel.result_view.image.text().lower()
        qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT_MS)


def test_a_folder_without_images(qtbot, panel, tmp_path):
    empty = tmp_path / "x.jpg"  # a directory named like an image
    empty.mkdir()
    with qtbot.waitSignal(panel.failed, timeout=TIMEOUT_MS) as blocker:
        panel.handle_drop(url_mime(empty))
    assert "x.jpg" in blocker.args[0] and "No image files" in blocker.args[0]
    qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT_MS)
    assert panel.state.batch.results == [] and panel.proxy.rowCount() == 0


def test_folder_of_good_and_bad_files_fills_the_table(qtbot, panel, engine, images, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    corpus = bad_corpus(folder)  # also makes folder.jpg, a directory, which a folder listing skips
    files = expand_inputs([folder])
    bad = {str(p): word for p, word in corpus.values() if p.is_file()}
    assert len(files) == len(images) + len(bad)
    failures = []
    panel.failed.connect(failures.append)
    with qtbot.waitSignal(panel.batch_finished, timeout=TIMEOUT_MS) as blocker:
        assert panel.handle_drop(url_mime(folder))
    results = blocker.args[0]
    expected = engine.classify(files)
    assert [r.source for r in results] == [str(f) for f in files]
    assert panel.proxy.rowCount() == len(files)
    for got, want in zip(results, expected):
        assert got.error == want.error
        assert_same_predictions([(p.label, p.prob) for p in got.top], want)
        if got.source in bad:
            assert bad[got.source].lower() in got.error.lower()
    # What the table shows, row by row (input order until sorted).
    model = panel.proxy
    for row, want in enumerate(expected):
        assert model.index(row, COL_FILE).data() == files[row].name
        if want.ok:
            assert model.index(row, COL_TOP1).data() == want.top[0].label
            assert model.index(row, COL_ERROR).data() == ""
        else:
            assert model.index(row, COL_ERROR).data() == want.error
    assert panel.progress.value() == len(files)
    assert "images/s" in panel.status.text() and panel.throughput > 0
    summary = f"{len(bad)} of {len(files)} files could not be classified"
    assert summary in panel.message.text() and any(summary in m for m in failures)
    assert not panel.busy

    # Sorting by probability orders the rows numerically, failures last.
    panel.table.sortByColumn(COL_PROB, Qt.SortOrder.DescendingOrder)
    probs = [model.index(r, 0).data(RESULT_ROLE) for r in range(model.rowCount())]
    keys = [r.top[0].prob if r.top else -1 for r in probs]
    assert keys == sorted(keys, reverse=True)

    # Clicking a good row shows its image and result in the single view.
    row = next(r for r, res in enumerate(probs) if res.ok and res.source.endswith("img3.png"))
    with qtbot.waitSignal(panel.image_shown, timeout=TIMEOUT_MS) as shown:
        panel.table.selectRow(row)
    want = expected[[str(f) for f in files].index(probs[row].source)]
    assert shown.args[0].source == "img3.png" and shown.args[0].result is probs[row]
    assert_same_predictions(drawn(panel), want)
    assert panel.state.shown_image is shown.args[0] and panel.result_view.image.text() == ""
    # A bad row shows its error instead.
    bad_row = next(r for r, res in enumerate(probs) if not res.ok)
    panel.table.selectRow(bad_row)
    assert probs[bad_row].error in panel.result_view.image.text()
    assert drawn(panel) == []


def test_export_has_a_row_per_class_and_the_errors(qtbot, panel, engine, images, loaded, tmp_path):
    # Old behaviour: a wide CSV (label_1, prob_1, …) unlike the command line's long one, without provenance.
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in images[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "text.png").write_text("not a picture\n" * 10)
    files = expand_inputs([folder])
    with qtbot.waitSignal(panel.batch_finished, timeout=TIMEOUT_MS):
        panel.classify_paths([folder])
    out = panel.batch_view.export(tmp_path / "results.csv", panel.state.batch)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    expected = engine.classify(files)
    assert [r["path"] for r in rows] == [str(w.source) for w in expected for _ in (w.top or [None])]
    for want in expected:
        mine = [r for r in rows if r["path"] == want.source]
        if want.ok:
            assert [r["label"] for r in mine] == [p.label for p in want.top] and mine[0]["error"] == ""
            assert float(mine[0]["prob"]) == pytest.approx(want.top[0].prob, abs=1e-5)
            assert float(mine[0]["forward_ms"]) > 0
        else:
            assert [(r["error"], r["rank"], r["label"]) for r in mine] == [(want.error, "", "")]
    sha = hashlib.sha256(Path(loaded.weights.path).read_bytes()).hexdigest()
    assert {(r["model"], r["weights"], r["weights_sha256"], r["device"]) for r in rows} == {
        ("googlenet", loaded.weights.path, sha, "cpu")}
    doc = json.loads(panel.batch_view.export(tmp_path / "results.json", panel.state.batch).read_text())
    assert [d["path"] for d in doc] == [str(w.source) for w in expected]
    lines = (panel.batch_view.export(tmp_path / "results.jsonl", panel.state.batch)).read_text().splitlines()
    assert [json.loads(line) for line in lines] == doc


def test_the_window_and_the_command_line_write_one_schema(qtbot, panel, images, loaded, tmp_path, capsys):
    """The same images, classified by the window and by `classify`: the same columns, fields and provenance."""
    from explorer.cli import main

    paths = images[:2]
    with qtbot.waitSignal(panel.batch_finished, timeout=TIMEOUT_MS):
        panel.classify_paths(paths)
    window_csv = list(csv.DictReader(panel.batch_view.export(tmp_path / "w.csv", panel.state.batch).open()))
    window_json = json.loads(panel.batch_view.export(tmp_path / "w.json", panel.state.batch).read_text())
    cli = ["classify", *map(str, paths), "--model", "googlenet", "--weights", loaded.weights.path, "--device", "cpu"]
    assert main([*cli, "--format", "csv"]) == 0
    cli_csv = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert main([*cli, "--format", "json"]) == 0
    cli_json = json.loads(capsys.readouterr().out)
    assert list(window_csv[0]) == list(cli_csv[0]) == list(CSV_COLUMNS)
    assert len(window_csv) == len(cli_csv) == 10

    def keys(value):  # every field name, nested, in order
        if isinstance(value, dict):
            return [(k, keys(v)) for k, v in value.items()]
        return [keys(v) for v in value[:1]] if isinstance(value, list) else None

    assert keys(window_json) == keys(cli_json) and [tuple(d) for d in cli_json] == [RECORD_KEYS] * 2
    assert [d["provenance"] for d in window_json] == [d["provenance"] for d in cli_json]
    for w, c in zip(window_json, cli_json):
        assert [t["index"] for t in w["top"]] == [t["index"] for t in c["top"]]
        assert [t["prob"] for t in w["top"]] == pytest.approx([t["prob"] for t in c["top"]], abs=1e-5)
    untimed = {"decode_ms", "preprocess_ms", "forward_ms", "total_ms", "prob"}
    assert [{k: v for k, v in r.items() if k not in untimed} for r in window_csv] == \
        [{k: v for k, v in r.items() if k not in untimed} for r in cli_csv]


def test_a_file_named_twice_is_classified_once(qtbot, panel, images):
    with qtbot.waitSignal(panel.batch_finished, timeout=TIMEOUT_MS) as blocker:
        panel.classify_paths([images[0], images[0].parent, images[0]])
    sources = [r.source for r in blocker.args[0]]
    assert sources == [str(images[0])] + [str(p) for p in expand_inputs([images[0].parent]) if p != images[0]]
    assert len(sources) == len(set(sources)) == len(images)


def test_the_views_write_one_percent_style(qtbot, panel, images):
    with qtbot.waitSignal(panel.batch_finished, timeout=TIMEOUT_MS):
        panel.classify_paths(images[:2])
    model = panel.batch_view.model
    cells = [model.item(r, c).text() for r in range(model.rowCount()) for c in range(model.columnCount())]
    tips = [model.item(r, c).toolTip() for r in range(model.rowCount()) for c in range(model.columnCount())]
    panel.table.selectRow(0)
    chart = percent_labels(panel.result_view.chart)
    assert assert_one_percent_style(*cells, *tips, *chart) >= 2 * (1 + 5 + 5) + 5


def test_cancel_and_a_new_drop_stop_a_batch(qtbot, loaded, engine, images, tmp_path):
    panel = make_panel(qtbot, loaded, batch_size=2)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        src = images[i % len(images)]
        (folder / f"{i:02d}{src.suffix}").write_bytes(src.read_bytes())
    finished = []
    panel.batch_finished.connect(finished.append)
    busy = []
    panel.busy_changed.connect(busy.append)

    panel.classify_paths([folder])
    assert panel.busy and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.model.rowCount() >= 2, timeout=TIMEOUT_MS)
    panel.cancel()
    assert not panel.busy and busy[-1] is False and not panel.cancel_button.isEnabled()
    assert "Cancelled" in panel.status.text()
    rows, value = panel.model.rowCount(), panel.progress.value()
    assert rows < 40
    qtbot.wait(1500)  # the worker stops at its next check; nothing more reaches the table
    assert panel.model.rowCount() == rows and panel.progress.value() == value and finished == []

    # A new drop while a batch runs cancels the batch and classifies the new image.
    panel.classify_paths([folder])
    qtbot.waitUntil(lambda: panel.model.rowCount() >= 2, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS) as blocker:
        panel.handle_drop(url_mime(images[2]))
    rows = panel.model.rowCount()
    assert rows < 40 and blocker.args[0].source == str(images[2])
    assert "Stopped by a new request" in panel.status.text()
    [expected] = engine.classify([images[2]])
    assert_same_predictions(drawn(panel), expected)
    qtbot.wait(500)
    assert panel.model.rowCount() == rows and finished == []
    assert panel.shutdown(30000)
    assert not panel.busy


def test_paste_of_a_qimage_classifies_it(qtbot, panel, engine, images):
    png = images[1]
    qimage = QImage(str(png))
    assert not qimage.isNull()
    [expected] = engine.classify([png])
    with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS) as blocker:
        panel.classify_image(qimage)
    assert blocker.args[0].source == PASTED_NAME
    assert_same_predictions(drawn(panel), expected)

    # Through the clipboard and Ctrl+V.
    QApplication.clipboard().setImage(QImage(str(images[3])))
    [expected] = engine.classify([images[3]])
    panel.activateWindow()
    panel.setFocus()
    qtbot.waitUntil(lambda: panel.hasFocus() or panel.isActiveWindow(), timeout=5000)
    with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS):
        qtbot.keyClick(panel, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert_same_predictions(drawn(panel), expected)


def test_paste_of_file_urls_and_of_nothing(qtbot, panel, engine, images):
    QApplication.clipboard().setMimeData(url_mime(images[0]))
    with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS):
        assert panel.paste()
    assert_same_predictions(drawn(panel), engine.classify([images[0]])[0])
    mime = QMimeData()
    mime.setText("just words")
    QApplication.clipboard().setMimeData(mime)
    with qtbot.waitSignal(panel.failed, timeout=5000) as blocker:
        assert not panel.paste()
    assert "Nothing to classify" in blocker.args[0]
    # The clipboard owns the mime data given to it: let Qt free it now, not while Python shuts down.
    QApplication.clipboard().clear()


def test_random_weights_badge(qtbot, loaded):
    panel = make_panel(qtbot)
    random = load_model("googlenet", weights="none", allow_download=False)
    assert random.weights.is_random and not loaded.weights.is_random
    panel.set_model(random, device="cpu")
    assert panel.badge.isVisible() and RANDOM_WARNING in panel.badge.text()
    qtbot.waitUntil(lambda: panel.classifier is not None, timeout=TIMEOUT_MS)
    panel.set_model(loaded, device="cpu")
    assert not panel.badge.isVisible()
    panel.set_model(random, device="cpu")
    assert panel.badge.isVisible()
    assert panel.shutdown(30000)


def test_requests_wait_for_the_model_and_fail_without_one(qtbot, loaded, engine, images):
    panel = make_panel(qtbot)
    with qtbot.waitSignal(panel.failed, timeout=5000) as blocker:
        panel.classify_paths([images[0]])
    assert "No model" in blocker.args[0] and not panel.busy
    # Asked while the classifier is still being built: it runs once the classifier is ready.
    with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS) as classified:
        panel.set_model(loaded, device="cpu")
        panel.classify_paths([images[0]])
        assert panel.busy
    assert_same_predictions(drawn(panel), engine.classify([images[0]])[0])
    assert classified.args[0].source == str(images[0])
    assert panel.shutdown(30000)


def test_sample_gallery_classifies_a_sample(qtbot, loaded, engine):
    panel = make_panel(qtbot, loaded, samples=None)
    from explorer.core.model.samples import sample_images

    samples = sample_images()
    if not samples:
        pytest.skip("no sample images in this checkout")
    assert len(panel.sample_buttons) == len(samples)
    with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS) as blocker:
        qtbot.mouseClick(panel.sample_buttons[0], Qt.MouseButton.LeftButton)
    assert blocker.args[0].source == str(samples[0].path)
    assert_same_predictions(drawn(panel), engine.classify([samples[0].path])[0])
    assert panel.shutdown(30000)


def test_work_runs_off_the_ui_thread(qtbot, panel, images, monkeypatch):
    threads = []
    real = Classifier.iter_classify

    def spy(self, *args, **kwargs):
        threads.append(threading.current_thread())
        yield from real(self, *args, **kwargs)

    monkeypatch.setattr(Classifier, "iter_classify", spy)
    with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS):
        panel.classify_paths([images[0]])
    assert threads and all(t is not threading.main_thread() for t in threads)


def test_device_choice_rebuilds_the_classifier_and_reports_a_missing_gpu(qtbot, tmp_path):
    import torch

    from explorer.core.model.loading import load_model
    from explorer.qt.classify.classify_panel import ClassifyPanel

    loaded = load_model("googlenet", weights="none", allow_download=False)
    panel = ClassifyPanel(runner=JobRunner(None))
    qtbot.addWidget(panel)
    panel.set_model(loaded, "auto")
    qtbot.waitUntil(lambda: panel.classifier is not None, timeout=120_000)
    choose_device(panel, "cpu")
    assert panel.images.device == "cpu" and panel.classifier is None  # being prepared again
    qtbot.waitUntil(lambda: panel.classifier is not None, timeout=120_000)
    assert panel.classifier.device == "cpu" and "on cpu" in panel.device_label.text()
    if not torch.cuda.is_available():
        with qtbot.waitSignal(panel.failed, timeout=120_000) as blocker:
            choose_device(panel, "cuda")
        assert "cuda" in blocker.args[0].lower()
        assert panel.classifier is None  # no silent fallback: the user asked for the GPU
    panel.shutdown()


# ---------------------------------------------------------------- with the block graph: one captured forward


@pytest.fixture(scope="module")
def graph():
    from explorer.core.model.graphs import zoo_block_graph as load_block_graph

    return load_block_graph("googlenet")


def count_forwards(classifier) -> list[int]:
    """Batch size of every forward of the classifier's network from now on (a pre-hook on its first
    convolution, which the plain module and the CaptureModel traced over it both call)."""
    first = next(m for m in classifier.module.modules() if isinstance(m, torch.nn.Conv2d))
    calls: list[int] = []
    first.register_forward_pre_hook(lambda m, args: calls.append(int(args[0].shape[0])))
    return calls


def test_with_a_graph_one_forward_gives_the_top5_and_the_capture(qtbot, loaded, engine, graph, images):
    panel = make_panel(qtbot, loaded, graph=graph)
    try:
        assert panel.classifier.can_capture
        calls = count_forwards(panel.classifier)
        path = images[2]
        with qtbot.waitSignal(panel.image_shown, timeout=TIMEOUT_MS) as shown_sig:
            with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS) as classified:
                panel.classify_paths([path])
        qtbot.waitUntil(lambda: not panel.busy, timeout=5000)
        shown = shown_sig.args[0]
        assert calls == [1]  # classification, activations and the picture from one decode and one forward
        assert shown.result is classified.args[0] is panel.result_view.result
        assert shown.model == "googlenet" and shown.capture.graph_name == "googlenet"
        [expected] = engine.classify([path])
        assert_same_predictions(drawn(panel), expected)
        values, indices = shown.capture.logits.softmax(1)[0].topk(5)
        assert [p.index for p in shown.result.top] == indices.tolist()
        assert set(shown.capture.branches) == {b.name for b in graph.blocks()}
        assert torch.equal(shown.x.contiguous(), engine.preprocess(path)[None])
        assert shown.rgb.shape == (224, 224, 3) and shown.image.size == Image.open(path).size
        assert panel.state.shown_image is shown and panel.result_view.image.text() == ""
    finally:
        assert panel.shutdown(30000)


def test_a_table_rows_preview_is_one_captured_forward_consistent_with_the_row(qtbot, loaded, graph, images):
    panel = make_panel(qtbot, loaded, graph=graph)
    try:
        # The first row is selected as soon as it arrives: its preview is shown too.
        batches = []
        panel.batch_finished.connect(batches.append)
        with qtbot.waitSignals([panel.batch_finished, panel.image_shown], timeout=TIMEOUT_MS):
            panel.classify_paths(images[:4])
        [rows] = batches
        qtbot.waitUntil(lambda: not panel.busy, timeout=5000)
        # The batch kept no activations: selecting a row runs one captured forward for that file only.
        calls = count_forwards(panel.classifier)
        with qtbot.waitSignal(panel.image_shown, timeout=TIMEOUT_MS) as shown_sig:
            panel.table.selectRow(3)
        shown = shown_sig.args[0]
        assert calls == [1]
        row = rows[3]
        assert shown.source == images[3].name and shown.result.source == row.source == str(images[3])
        # What the view shows comes from the capture's forward, and agrees with the table's row.
        assert panel.result_view.result is shown.result
        assert_same_predictions([(p.label, p.prob) for p in shown.result.top], row)
        assert_same_predictions(drawn(panel), row)
        values, indices = shown.capture.logits.softmax(1)[0].topk(5)
        assert [p.index for p in shown.result.top] == indices.tolist()
        assert [p.prob for p in shown.result.top] == values.tolist()
    finally:
        assert panel.shutdown(30000)


def test_fast_decode_box_sets_the_classifier_and_labels_results(qtbot, panel, tmp_path):
    """Off by default (exact preprocessing); ticked, a big JPEG is decoded at a reduced scale and its
    result says so in the view; a classifier prepared later (device change) keeps the choice."""
    from explorer.core.classify.inference import FAST_DECODE_NOTICE

    big = tmp_path / "big.jpg"
    Image.fromarray((synthetic_batch(2, 64, torch.Generator().manual_seed(5))[1].permute(1, 2, 0).numpy() * 255)
                    .astype("uint8")).resize((1200, 900)).save(big, quality=90)
    assert not panel.fast_decode_box.isChecked() and not panel.classifier.fast_decode
    for checked in (True, False):
        panel.fast_decode_box.setChecked(checked)
        assert panel.classifier.fast_decode is checked
        with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS) as blocker:
            panel.classify_paths([big])
        result = blocker.args[0]
        assert result.ok and (result.notice == FAST_DECODE_NOTICE) is checked
        assert (FAST_DECODE_NOTICE in panel.result_view.timings.text()) is checked
        qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT_MS)
    panel.fast_decode_box.setChecked(True)
    choose_device(panel, "auto")
    qtbot.waitUntil(lambda: panel.classifier is not None and not panel.busy, timeout=TIMEOUT_MS)
    assert panel.classifier.fast_decode


def test_an_image_given_after_a_batch_is_not_shown_as_a_row_of_it(qtbot, panel, images):
    """A paste (or any single image) after a batch: the batch stays, but no row is highlighted as the image on
    screen; clicking a row shows that row's image again."""
    from PIL import Image

    with qtbot.waitSignal(panel.batch_finished, timeout=TIMEOUT_MS):
        panel.classify_paths([images[0].parent])
    rows = panel.proxy.rowCount()
    assert rows == len(images) and panel.table.selectionModel().currentIndex().isValid()  # row 1 is on screen
    with qtbot.waitSignal(panel.image_classified, timeout=TIMEOUT_MS) as sig:
        panel.classify_image(Image.open(images[1]).convert("RGB").rotate(90))
    assert sig.args[0].source == "<pasted image>" and panel.state.image.name == "<pasted image>"
    assert panel.proxy.rowCount() == rows  # the batch is kept
    assert not panel.table.selectionModel().hasSelection()
    assert not panel.table.selectionModel().currentIndex().isValid()
    with qtbot.waitSignal(panel.image_shown, timeout=TIMEOUT_MS) as shown:
        panel.table.selectRow(2)
    assert shown.args[0].source.endswith(panel.proxy.index(2, COL_FILE).data())
