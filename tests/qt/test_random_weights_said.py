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
