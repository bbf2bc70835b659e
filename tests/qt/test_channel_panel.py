"""ChannelPanel: a clicked channel's visualisation, dataset crops and map; the branch grid; progress,
cancel and errors, all on one job runner."""

from __future__ import annotations

import numpy as np
import pytest
from netutil import calibrated_model, synthetic_batch
from PIL import Image

from explorer.core.graph.capture import CaptureModel
from explorer.core.microscope.featurevis import Target, cache_key, weights_digest
from explorer.core.model.loading import LoadedModel
from explorer.core.model.weights import WeightsState
from explorer.core.model.zoo import get_spec
from explorer.qt.microscope.channel_panel import GRID_CHANNELS, ChannelPanel
from explorer.core.model.graphs import zoo_block_graph as load_block_graph

RUN_MS = 120_000


@pytest.fixture(scope="module")
def model():
    graph = load_block_graph("googlenet")
    module = calibrated_model("googlenet")
    spec = get_spec("googlenet")
    loaded = LoadedModel(spec, module, WeightsState("file", "calibrated"), spec.categories())
    return loaded, graph, CaptureModel(module, graph)


@pytest.fixture
def panel(qtbot, model, tmp_path, monkeypatch, job_runner):
    monkeypatch.setenv("INCEPTION_EXPLORER_CACHE", str(tmp_path / "cache"))
    loaded, graph, cm = model
    p = ChannelPanel(runner=job_runner.lanes("images"))
    qtbot.addWidget(p)
    p.show()
    p.set_model(cm, graph, loaded)
    p.state.steps, p.state.size = 2, 48
    yield p
    p.cancel()
    p.runner.wait(RUN_MS)


def test_a_channel_shows_its_visualisation_map_and_examples(qtbot, panel, model, tmp_path):
    loaded, graph, cm = model
    assert "lucid#61" in panel.note.text()  # torchvision's GoogLeNet is batch-normalised
    fmap = np.random.default_rng(0).random((12, 12)).astype(np.float32)
    panel.show_channel("inception3a", 1, 5, fmap)
    assert not panel.map_label.pixmap().isNull()
    qtbot.waitUntil(lambda: not panel.vis_label.pixmap().isNull(), timeout=RUN_MS)
    key = cache_key(loaded.name, weights_digest(loaded.module), Target("inception3a", 1), 5, 2, 48)
    assert (tmp_path / "cache" / "featurevis" / f"{key}.png").is_file()
    qtbot.waitUntil(lambda: "Index folder" in panel.examples_label.text(), timeout=RUN_MS)

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, img in enumerate(synthetic_batch(3, 80, __import__("torch").Generator().manual_seed(2))):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    panel.index_folder(str(folder))
    qtbot.waitUntil(lambda: "indexed" in panel.status.text(), timeout=RUN_MS)
    assert panel.status.text().startswith("3 indexed, 0 already indexed, 1 unreadable")
    assert "broken.png" in panel.status.text()
    assert not panel.examples_label.pixmap().isNull()


def test_branch_grid_shows_the_first_channels(qtbot, panel):
    panel.show_channel("inception3a", 1, 0)
    panel.show_branch_grid()
    qtbot.waitUntil(lambda: not panel.grid_label.pixmap().isNull(), timeout=RUN_MS)
    assert panel.status.text() == f"inception3a branch 2: channels 0–{GRID_CHANNELS - 1}"


def test_cancel_stops_the_job_and_errors_reach_the_window(qtbot, panel):
    panel.state.steps = 2000
    panel.show_channel("inception3a", 1, 7)
    assert panel.cancel_button.isEnabled()
    panel.cancel_button.click()
    assert not panel.cancel_button.isEnabled() and not panel.progress.isVisible()
    qtbot.waitUntil(lambda: panel.runner.running("featurevis") is None, timeout=RUN_MS)
    assert panel.vis_label.pixmap().isNull()
    panel.state.steps = 2
    with qtbot.waitSignal(panel.failed, timeout=RUN_MS) as sig:
        panel.state.block = "inception9z"  # no such layer: the engine's error is shown, not raised
        panel.show_branch_grid()
    assert sig.args[0] and panel.status.text() == sig.args[0]


def test_a_channel_chosen_while_the_panel_is_hidden_waits_until_it_is_shown(qtbot, panel):
    started = []
    real_start = panel.runner.start
    panel.runner.start = lambda slot, *a, **k: (started.append(slot), real_start(slot, *a, **k))[1]
    panel.hide()
    panel.show_channel("inception3a", 1, 5)
    assert started == []  # no optimisation for a panel nobody sees
    panel.show()
    assert started
    qtbot.waitUntil(lambda: not panel.vis_label.pixmap().isNull(), timeout=RUN_MS)


def test_an_example_index_that_is_not_ours_is_a_message_not_a_traceback(qtbot, panel, tmp_path, capfd):
    """The cache's dataset-example index is some other file: indexing says so in the panel and the window,
    names the file, prints no traceback and leaves the file as it was."""
    cache = tmp_path / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    db = cache / "examples.sqlite"
    data = bytes(range(256)) * 40
    db.write_bytes(data)
    folder = tmp_path / "photos"
    folder.mkdir()
    with qtbot.waitSignal(panel.failed, timeout=RUN_MS) as sig:
        panel.index_folder(str(folder))
    assert str(db) in sig.args[0] and "not an example index" in sig.args[0] and "\n" not in sig.args[0]
    assert panel.status.text() == sig.args[0] and not panel.progress.isVisible()
    assert db.read_bytes() == data
    assert "Traceback" not in capfd.readouterr().err
