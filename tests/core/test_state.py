"""ExplorerState: announcements, grouping, and what a model switch does to results (no Qt)."""

from explorer.core.session.state import BatchRun, ExplorerState, InputSize, State, StateProperty


def test_a_change_is_announced_once_and_an_equal_value_not_at_all():
    st = ExplorerState()
    seen = []
    st.connect("input_size", seen.append)
    st.input_size = InputSize(320, 320)
    st.input_size = InputSize(320, 320)  # equal: a widget writing back what it was told causes no loop
    assert seen == [InputSize(320, 320)]
    st.disconnect("input_size", seen.append)
    st.input_size = InputSize(10, 10)
    assert len(seen) == 1


def test_changes_are_held_until_the_block_ends_and_announced_once_each():
    st = ExplorerState()
    seen = []
    st.connect("trace_error", lambda v: seen.append(("trace_error", v, st.failed_node)))
    st.connect("failed_node", lambda v: seen.append(("failed_node", v, st.trace_error)))
    with st.changes():
        st.trace_error = "too small"
        st.failed_node = "maxpool3"
        st.trace_error = "too small!"
        assert seen == []
    # Each callback sees the final values of both properties.
    assert seen == [("trace_error", "too small!", "maxpool3"), ("failed_node", "maxpool3", "too small!")]


def test_unknown_property_cannot_be_connected():
    import pytest

    with pytest.raises(AttributeError):
        ExplorerState().connect("no_such_thing", print)


def test_a_model_switch_moves_the_batch_aside_and_clears_the_previous_models_results():
    st = ExplorerState()
    st.begin_model("googlenet", spec=None)
    st.batch = BatchRun(model="googlenet", inputs=("photos/",), results=[1, 2, 3])
    st.classification = object()
    st.shown_image = object()
    st.selection = "inception4a"
    changed = []
    for name in ("batch", "previous_batch", "classification", "shown_image", "model", "model_status"):
        st.connect(name, lambda v, n=name: changed.append(n))
    st.begin_model("inception_v3", spec=None)
    assert st.batch is None and st.previous_batch.model == "googlenet" and st.previous_batch.results == [1, 2, 3]
    assert st.classification is None and st.shown_image is None and st.selection is None
    assert st.model_status == "loading" and st.status_text == "loading inception_v3…"
    assert sorted(changed) == sorted(["batch", "previous_batch", "classification", "shown_image", "model"])


def test_properties_are_listed_with_their_docstrings():
    names = ExplorerState.property_names()
    assert {"model", "input_size", "trace", "expanded", "selection", "batch", "shown_image"} <= set(names)
    assert all(getattr(ExplorerState, n).__doc__ for n in names)


def test_arrays_compare_as_changed_without_raising():
    import numpy as np

    class S(State):
        value = StateProperty(None, "an array")

    s = S()
    seen = []
    s.connect("value", seen.append)
    s.value = np.zeros(3)
    s.value = np.zeros(3)  # element-wise equality is no answer: announced again
    assert len(seen) == 2


def test_branch_evidence_goes_with_the_image_and_the_model():
    from explorer.core.attribution.methods import BranchEvidence
    from explorer.core.session.state import ExplorerState

    st = ExplorerState()
    ev = BranchEvidence("googlenet", 3, {"inception3a": [1.0, 2.0]})
    st.shown_image = "first image"
    st.branch_evidence = ev
    st.shown_image = "first image"  # the same image again: nothing changes
    assert st.branch_evidence is ev
    st.shown_image = "another image"
    assert st.branch_evidence is None
    st.branch_evidence = ev
    st.begin_model("inception_v3", None)
    assert st.branch_evidence is None


def test_results_go_when_the_key_they_were_made_for_changes():
    """The model, its weights and the image make the key; each change drops what it no longer covers, once,
    and a result made for an earlier key is refused when it arrives late. The image stays through a switch."""
    from explorer.core.session.state import ChannelChoice, ImageInput

    st = ExplorerState()
    st.begin_model("googlenet", spec=None)
    st.loaded = object()  # its weights are in
    first = ImageInput("photo.jpg", "photo.jpg")
    st.image = first
    key = st.result_key
    assert (key.model, key.image) == ("googlenet", first) and st.holds(key) and st.holds(key.for_model())
    st.shown_image, st.attributions, st.channel = "shown", ("map",), ChannelChoice("inception3b", 2, 12)
    keys = []
    st.connect("result_key", keys.append)

    st.image = ImageInput("photo.jpg", "photo.jpg")  # the same file given again is another image
    assert st.attributions == () and st.channel == ChannelChoice("inception3b", 2, 12) and st.shown_image == "shown"
    assert not st.holds(key) and st.holds(key.for_model()) and key.change_to(st.result_key) == "the image changed"

    st.attributions = ("map",)
    weights_key = st.result_key
    st.loaded = object()  # other weights for the same model
    assert st.attributions == () and st.channel is None and st.shown_image is None
    assert weights_key.change_to(st.result_key) == "the weights changed"

    st.attributions, st.channel, image = ("map",), ChannelChoice("inception3b", 2, 12), st.image
    before = st.result_key
    st.begin_model("inception_v3", spec=None)
    assert st.attributions == () and st.channel is None and st.image is image
    assert not st.holds(before) and not st.holds(before.for_model())
    assert before.change_to(st.result_key) == "the model changed"
    assert len(keys) == 3  # one announcement per change


def test_a_drawn_box_goes_with_the_image_and_the_model_not_the_weights():
    """A box drawn around the object is in the image's input pixels: another image or another model (another
    preprocessing) makes it meaningless; new weights for the same model and image do not."""
    from explorer.core.session.state import ImageInput

    st = ExplorerState()
    st.begin_model("googlenet", spec=None)
    st.loaded = object()
    st.image = ImageInput("photo.jpg", "photo.jpg")
    st.object_box = (10, 20, 50, 60)
    st.loaded = object()  # other weights
    assert st.object_box == (10, 20, 50, 60)
    st.image = ImageInput("photo.jpg", "photo.jpg")  # another image (the same file again)
    assert st.object_box is None
    st.object_box = (1, 2, 3, 4)
    st.begin_model("inception_v3", spec=None)
    assert st.object_box is None
