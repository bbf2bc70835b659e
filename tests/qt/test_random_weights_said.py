"""With random weights the numbers mean nothing, and the views say so (issue 24): the attribution panel's status
line, the curves' line and the sanity strip (which never says a map "depends on the learned weights" when there
are none), and the methods table's sanity verdict. The same views of the trained demo model say nothing of it."""

import pytest
from PIL import Image

from explorer.core.demo.samples import drawn_samples
from explorer.core.graph.capture import CaptureModel
from explorer.core.model.graphs import zoo_block_graph
from explorer.core.model.loading import load_model
from explorer.core.model.zoo import get_spec
from explorer.core.session.state import ExplorerState, ImageInput
from explorer.qt.attribution.attribution_evidence import COL_SANITY
from explorer.qt.attribution.attribution_panel import AttributionPanel
from explorer.qt.panels import UNLEARNED

RUN_MS = 60_000


@pytest.fixture(scope="module")
def graph():
    return zoo_block_graph("shapes_inception")


@pytest.fixture(scope="module", params=["none", "auto"], ids=["random", "trained"])
def loaded(request):
    return load_model("shapes_inception", weights=request.param)


@pytest.fixture
def panel(qtbot, graph, loaded, job_runner):
    state = ExplorerState()
    state.loaded = loaded  # the window's state knows the weights
    p = AttributionPanel(runner=job_runner.lanes("images"), explorer_state=state)
    qtbot.addWidget(p)
    p.resize(1280, 500)
    p.show()
    p.set_model(CaptureModel(loaded.module, graph).eval(), graph, list(loaded.categories))
    sample = drawn_samples()[1]
    pil = Image.fromarray(sample.image)
    state.image = ImageInput(pil, "<drawn star>", mask=sample.mask)
    p.set_image(get_spec("shapes_inception").transforms()(pil)[None], sample.image, top1=sample.label)
    yield p
    p.shutdown()


def test_the_attribution_views_say_what_random_weights_make_of_their_numbers(qtbot, panel, graph, loaded):
    random = loaded.weights.is_random
    panel.set_method("grad_cam")
    panel.set_gradcam_layer(graph.blocks()[-1].name, None)
    with qtbot.waitSignal(panel.attribution_finished, timeout=RUN_MS):
        panel.run_button.click()
    assert (UNLEARNED in panel.status.text()) == random
    assert (UNLEARNED in panel.truth.line.text()) == random
    if random:
        assert "color" in panel.status.styleSheet()  # in the warning colour
    panel.curve_steps.setValue(4)
    with qtbot.waitSignal(panel.faithfulness_finished, timeout=RUN_MS):
        panel.faithfulness_button.click()
    assert (UNLEARNED in panel.status.text()) == random
    assert ("mean nothing" in panel.curve_caption.text()) == random
    panel.sanity_steps.setValue(2)
    with qtbot.waitSignal(panel.sanity_finished, timeout=RUN_MS):
        panel.sanity_button.click()
    caption = panel.sanity_caption.text()
    assert (UNLEARNED in panel.status.text()) == random
    assert ("never learned" in caption) == random
    cell = panel.table.item(0, COL_SANITY).text()
    assert ("random weights" in cell) == random
    if random:
        assert "depends on the learned weights" not in caption


# -- a batch where every image gets the same top-1 ------------------------------------------------------------


def run_batch(qtbot, loaded, paths):
    from explorer.qt.classify.classify_panel import ClassifyPanel
    from explorer.qt.workers import JobRunner

    p = ClassifyPanel(runner=JobRunner(None), samples=[])
    qtbot.addWidget(p)
    p.show()
    p.set_model(loaded, device="cpu")
    qtbot.waitUntil(lambda: p.classifier is not None and not p.busy, timeout=RUN_MS)
    with qtbot.waitSignal(p.batch_finished, timeout=RUN_MS) as sig:
        p.classify_paths(paths)
    return p, sig.args[0]


def test_a_batch_of_one_class_from_random_weights_says_so(qtbot):
    from explorer.core.model.samples import SAMPLES_DIR, sample_images

    if len(sample_images()) < 2:
        pytest.skip("no sample photos in this checkout")
    p, results = run_batch(qtbot, load_model("googlenet", weights="none"), [SAMPLES_DIR])
    tops = {r.top[0].label for r in results}
    assert len(tops) == 1  # what seeded random weights do to every photo (issue 24: 'cowboy boot')
    text = p.status.text()
    assert f"Every image got the same top-1 class, {tops.pop()}" in text and "mean nothing" in text
    assert "color" in p.status.styleSheet()
    assert p.shutdown(30000)


def test_a_trained_batch_says_only_what_it_found(qtbot, tmp_path):
    """The demo model on drawn shapes: three classes give no line; three stars all 'star' is a fact, not a fault."""
    from explorer.core.demo.drawing import draw_images
    from explorer.core.demo.task import SHAPE_CLASSES

    drawn = draw_images(12, seed=77)
    mixed, stars = [], []
    for i, d in enumerate(drawn):
        path = tmp_path / f"{i:02d}_{d.class_name}.png"
        Image.fromarray(d.image).save(path)
        (stars if d.class_name == "star" else mixed).append(path)
    trained = load_model("shapes_inception")
    p, results = run_batch(qtbot, trained, mixed[:3])
    assert [r.top[0].label for r in results] == [SHAPE_CLASSES[d.label] for d in drawn[:3]]
    assert "same top-1" not in p.status.text()
    assert p.shutdown(30000)
    p, results = run_batch(qtbot, trained, stars)
    assert len(stars) == 2 and {r.top[0].label for r in results} == {"star"}
    assert "Every image got the same top-1 class, star." in p.status.text()
    assert "mean nothing" not in p.status.text() and p.status.styleSheet() == ""
    assert p.shutdown(30000)


def test_the_same_top1_line_by_hand():
    from explorer.core.classify.results import ClassificationResult, Prediction
    from explorer.core.session.state import BatchRun
    from explorer.qt.classify.batch_view import same_top1_text

    def result(index, label, error=None):
        return ClassificationResult("x.png", [Prediction(index, label, 0.001)] if error is None else [], error=error)

    class Random:
        is_random = True

    boots = [result(514, "cowboy boot"), result(514, "cowboy boot"), result(0, "", error="not an image")]
    assert "cowboy boot: random weights" in same_top1_text(boots, BatchRun("googlenet", (), provenance=Random()))
    assert same_top1_text(boots, BatchRun("googlenet", ())) == "Every image got the same top-1 class, cowboy boot."
    assert same_top1_text(boots[:1], None) == ""  # one image: nothing to compare
    assert same_top1_text([*boots, result(3, "star")], None) == ""


# -- the data-flow slides -----------------------------------------------------------------------------------------


def caveat_pixels(view) -> int:
    """Pixels of the slide, rendered at 1280×720, in the caveat's colour (the maps are in the middle, never here)."""
    import numpy as np

    from explorer.qt.lecture.dataflow_view import CAVEAT

    img = view.render_image(1280, 720).convertToFormat(view.render_image(1, 1).Format.Format_RGB888)
    a = np.frombuffer(img.constBits(), np.uint8).reshape(720, img.bytesPerLine())[:, :1280 * 3].reshape(720, 1280, 3)
    want = np.array([CAVEAT.red(), CAVEAT.green(), CAVEAT.blue()])
    return int((np.abs(a[-90:].astype(int) - want).max(axis=2) < 40).sum())


@pytest.mark.parametrize("model, weights", [("googlenet", "none"), ("shapes_inception", "auto")],
                         ids=["random", "trained"])
def test_every_data_flow_slide_of_random_weights_says_so(make_window, qtbot, model, weights):
    from PySide6.QtCore import Qt

    w = make_window(model, weights=weights)
    qtbot.waitUntil(lambda: w.images is not None and w.images.network_key is not None
                    and w.images.classify.classifier is not None, timeout=RUN_MS)
    with qtbot.waitSignal(w.images.classify.image_shown, timeout=RUN_MS):
        qtbot.mouseClick(w.images.classify.drawn_buttons[0], Qt.MouseButton.LeftButton)
    random = w.state.loaded.weights.is_random
    assert random == (weights == "none")
    p = w.presentation
    p.enter()
    assert p.showing_dataflow()
    for _ in range(len(p.deck)):  # the input, every block, the top-5
        assert (UNLEARNED in p.slide_view.caveat.lower()) == random
        assert (caveat_pixels(p.slide_view) > 0) == random
        p.next()
    p.leave()


# -- the handout's image pages ------------------------------------------------------------------------------------


def pdf_pages(data: bytes) -> list[str]:
    import io
    import unicodedata

    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(io.BytesIO(data))
    return [" ".join(unicodedata.normalize("NFKC", p.extract_text()).split()) for p in reader.pages]


@pytest.mark.parametrize("weights", ["none", "auto"], ids=["random", "trained"])
def test_the_handouts_image_pages_say_what_random_weights_make_of_them(tmp_path, weights):
    from explorer.core.lecture.handout import build_handout, drawings
    from explorer.qt.lecture.handout_pdf import ensure_app, record_drawings, render_pdf, shows_image

    ensure_app()
    loaded = load_model("shapes_inception", weights=weights)
    graph = zoo_block_graph("shapes_inception")
    sample = drawn_samples()[2]
    path = tmp_path / "ring.png"
    Image.fromarray(sample.image).save(path)
    blocks = [graph.blocks()[0].name]
    handout = build_handout(loaded, graph, (64, 64), image=path, blocks=blocks)
    assert bool(handout.image_caveat) == loaded.weights.is_random
    pages = pdf_pages(render_pdf(handout, record_drawings(graph, handout.trace, drawings(blocks))))
    titles = [s.title for s in handout.sections]
    image_titles = {s.title for s in handout.sections if shows_image(s)}
    assert {"Top-5 of ring.png", f"Block {blocks[0]}: feature maps", "Attribution: Grad-CAM of ring.png"} <= image_titles
    for text in pages:
        title = next(t for t in sorted(titles, key=len, reverse=True) if t in text)
        said = text.count("mean nothing for a network that has not learned")
        assert said == (title in image_titles and loaded.weights.is_random), (title, text[:160])
        if title in image_titles:  # one caveat a page: the weights are not warned of a second time
            assert text.lower().count("random weights") == said, text[:400]


def test_the_windows_handout_of_random_weights_says_so_on_the_image_pages(make_window, qtbot, tmp_path):
    from PySide6.QtCore import Qt

    w = make_window("shapes_inception")  # weights="none": the demo network untrained
    qtbot.waitUntil(lambda: w.images is not None and w.images.classify.classifier is not None, timeout=RUN_MS)
    with qtbot.waitSignal(w.images.classify.image_shown, timeout=RUN_MS):
        qtbot.mouseClick(w.images.classify.drawn_buttons[0], Qt.MouseButton.LeftButton)
    out = tmp_path / "handout.pdf"
    written = []
    w.exports.export_handout(out)
    w.exports.handout_export.written.connect(written.append)
    qtbot.waitUntil(lambda: bool(written), timeout=RUN_MS)
    pages = pdf_pages(out.read_bytes())
    said = ["mean nothing for a network that has not learned" in p for p in pages]
    top5 = next(i for i, p in enumerate(pages) if "Top-5 of" in p)
    assert said[top5] and said[-1] and not said[0]  # the image's top-5 and its Grad-CAM; not the graph
