"""Every job the window runs is the session's, with typed events, headless: opening any CNN, torchvision's names,
the capture network, block timing, the handout and Compare. Each is driven with the InlineRunner (or a runner
that lets the person act before the job runs) and checked against an independent computation."""

import json
import textwrap

import pytest
import torch

from explorer.core.session import events as ev
from explorer.core.session.session import Session

from .test_session import DeferredRunner

TWO_BRANCH = textwrap.dedent('''
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Conv2d(2, 6, 3, padding=1))

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(10, 5)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.block(x)), 1))

    def build():
        return Net()
''')


def heard(session, kind):
    """The `kind` events `session` tells from now on."""
    told = []
    session.on(kind, told.append)
    return told


@pytest.fixture
def demo():
    s = Session(allow_download=False, prepares_classifier=False)
    s.set_model("shapes_inception", weights="none")
    assert s.state.loaded is not None and s.state.trace is not None
    return s


def test_opening_a_model_file_is_a_session_job(tmp_path):
    path = tmp_path / "two.py"
    path.write_text(TWO_BRANCH)
    s = Session(allow_download=False, prepares_classifier=False)
    s.set_model("shapes_inception", weights="none")
    opened = heard(s, ev.ModelOpened)
    s.open_reference(str(path))
    assert [e.ref for e in opened] == [str(path)] and opened[0].spec is not None
    s.opened(opened[0].ref, opened[0].spec, opened[0].graph)
    st = s.state
    assert st.model_ref == str(path) and st.graph is opened[0].graph and st.loaded is not None
    # The block's branches are the file's own layers: 4 + 6 channels, concatenated.
    block = next(iter(st.graph.blocks()))
    assert len(block.branches) == 2 and st.trace.nodes[block.name].output_shape == (10, 224, 224)
    # A zoo name comes back without a graph; a broken file is one problem about "open" and the model stays.
    s.open_reference("googlenet")
    assert opened[-1] == ev.ModelOpened("googlenet", None, None)
    broken = tmp_path / "broken.py"
    broken.write_text("def build(:\n")
    s.open_reference(str(broken))
    assert st.problem.topic == "open" and "broken.py" in st.problem.message and st.model_ref == str(path)


def test_torchvisions_names_are_listed_once():
    import torchvision.models as tvm

    s = Session()
    told = heard(s, ev.ModelNamesListed)
    s.list_model_names()
    expected = tuple(f"torchvision:{n}" for n in tvm.list_models(module=tvm))
    assert [e.names for e in told] == [expected] and s.model_names == expected
    s.runner = DeferredRunner()  # the second time no job runs at all
    s.list_model_names()
    assert [e.names for e in told] == [expected] * 2 and s.runner.queue == []


def test_the_capture_network_is_built_by_the_session_for_its_model(demo):
    ready = heard(demo, ev.NetworkReady)
    demo.attributions.prepare_network("cpu")
    assert ready == [ev.NetworkReady("cpu")]
    network = demo.captures.on("cpu")
    # The loaded network traced with probes: its forward gives the model's logits.
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(network(x), demo.state.loaded.module(x), atol=1e-5)
    # Built for a model that left the screen before the job ran: nobody hears of it.
    demo.runner = DeferredRunner()
    demo.attributions.prepare_network("cpu")
    demo.set_model("googlenet", weights="none")
    demo.runner.run_all()
    assert ready == [ev.NetworkReady("cpu")]


def test_block_times_belong_to_the_model_they_were_measured_on(demo):
    progress = heard(demo, ev.JobProgress)
    assert demo.timing.measure("cpu", warmup=0, repeats=2)
    times = demo.state.block_times
    graph = demo.state.graph
    assert times.model == "shapes_inception" and times.input_shape[-2:] == (64, 64) and times.repeats == 2
    # Every block of the graph is timed, each sample a positive duration.
    assert {b.name for b in graph.blocks()} <= set(times.samples)
    assert all(len(v) == 2 and min(v) > 0 for v in times.samples.values())
    assert progress and progress[-1].lane == "model/overlay" and progress[-1].done == progress[-1].total
    # Timing during a model switch: the times of the previous model never reach the state.
    demo.state.block_times = None
    demo.runner = DeferredRunner()
    assert demo.timing.measure("cpu", warmup=0, repeats=1)
    demo.set_model("googlenet", weights="none")
    # A model whose weights have not arrived says why it cannot be timed.
    assert not demo.timing.measure("cpu") and demo.timing.why_not() == "timing starts once the model has loaded"
    demo.runner.run_all()
    assert demo.state.loaded.name == "googlenet" and demo.state.block_times is None


def test_a_handout_is_written_by_the_session_through_the_writer_it_is_given(demo, tmp_path):
    from explorer.core.lecture.handout import IMAGE_CAVEAT
    from explorer.core.outputs import OutputError, write_file

    def writer(handout, pictures, path, *, cancel, inputs):
        titles = [s.title for s in handout.sections]
        return write_file(path, json.dumps({"titles": titles, "pictures": pictures,
                                            "caveat": handout.image_caveat}).encode(), inputs=inputs)

    written = heard(demo, ev.HandoutWritten)
    block = next(iter(demo.state.graph.blocks())).name
    out = tmp_path / "h.json"
    assert demo.handouts.write(out, [block], {"x": 1}, writer)
    assert written == [ev.HandoutWritten(str(out))]
    made = json.loads(out.read_text())
    assert made["pictures"] == {"x": 1} and made["caveat"] == IMAGE_CAVEAT  # the demo network, untrained
    assert any(block in t for t in made["titles"]) and any("Paper table" in t for t in made["titles"])

    def full(*_a, **_k):
        raise OutputError(out, "no space left on device")

    assert demo.handouts.write(tmp_path / "x.json", [block], {}, full)
    assert demo.state.problem.topic == "handout" and "no space left" in demo.state.problem.message
    assert written == [ev.HandoutWritten(str(out))]
    demo.set_model("googlenet", weights="none")
    demo.runner = DeferredRunner()
    demo.state.loaded = None
    assert not demo.handouts.write(tmp_path / "y.json", [block], {}, writer)
    assert demo.state.problem.message == "the handout can be written once the model has loaded"


def test_compare_is_a_session_job_and_the_last_request_wins():
    import torchvision.models as tvm

    s = Session()
    told = heard(s, ev.Compared)
    s.comparisons.compare("googlenet", "inception_v3", (224, 224))
    (event,) = told
    c = event.comparison
    assert event.names == ("googlenet", "inception_v3") and c.size == (224, 224)
    assert [g.name for g in event.graphs] == ["googlenet", "inception_v3"]
    # The parameters of the inference path, counted on torchvision's own networks without their aux heads.
    for side, build in ((c.a, tvm.googlenet), (c.b, tvm.inception_v3)):
        net = build(weights=None, aux_logits=False, init_weights=False)
        assert side.total_params == sum(p.numel() for p in net.parameters())
    # Two requests before either ran: only the last one is heard.
    s.runner = DeferredRunner()
    s.comparisons.compare("googlenet", "inception_v3", (192, 192))
    s.comparisons.compare("googlenet", "inception_v3", (160, 160))
    s.runner.run_all()
    assert [e.size for e in told[1:]] == [(160, 160)]


def test_a_blocks_decomposition_belongs_to_its_image(tmp_path):
    """Decompose through the session: into state.conductance, adding up on the trained demo network (checked
    against two plain forwards of the loaded network), and gone when another image comes."""
    from PIL import Image

    from explorer.core.attribution.methods import baseline_for
    from explorer.core.demo.drawing import draw_images
    from explorer.core.demo.task import MEAN, STD

    s = Session(allow_download=False)
    s.set_model("shapes_inception")
    assert not s.state.loaded.weights.is_random
    paths = []
    for i, d in enumerate(draw_images(2, 2426)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(d.image).save(paths[-1])
    s.classify(paths[0])
    decomposed = heard(s, ev.BranchesDecomposed)
    block = [b.name for b in s.state.graph.blocks()][-1]
    s.attributions.decompose(block)
    result = s.state.conductance
    assert decomposed == [ev.BranchesDecomposed(result)] and result.block == block
    x = s.attributions.input_x
    net = s.state.loaded.module.eval()
    with torch.no_grad():
        logits, logits0 = net(x), net(baseline_for(x, s.attributions.choices.params.ig_baseline, mean=MEAN, std=STD))
    t = result.target
    assert result.difference == pytest.approx(float(logits[0, t] - logits0[0, t]), abs=1e-4)
    assert result.relative_error() < 0.02
    s.classify(paths[1])
    assert s.state.conductance is None
