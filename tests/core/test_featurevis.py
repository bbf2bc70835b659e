"""Feature visualisation: the optimised image excites its channel more than every sample photograph and
than noise (measured with a forward hook on the plain torchvision model), more steps climb higher, the
other objectives do what they say, and results are cached per model, weights and request."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from explorer.core.microscope import featurevis as fv
from explorer.core.graph.capture import CaptureModel
from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.microscope.featurevis import Target, parse_channels, visualize, visualize_cached
from explorer.core.model.graphs import zoo_block_graph
from explorer.core.model.samples import sample_images
from tests.netutil import calibrated_model

SIZE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_NORM = T.Normalize(MEAN, STD)


@pytest.fixture(scope="module")
def model():
    return calibrated_model("googlenet")


@pytest.fixture(scope="module")
def cm(model):
    return CaptureModel(model, zoo_block_graph("googlenet"))


def _branch_maps(model, images: torch.Tensor) -> torch.Tensor:
    """inception3a's second branch (torchvision's inception3a.branch2) for images in [0, 1]."""
    got = {}
    h = model.inception3a.branch2.register_forward_hook(lambda m, i, o: got.__setitem__("a", o.detach()))
    try:
        with torch.no_grad():
            model(_NORM(images))
    finally:
        h.remove()
    return got["a"]


def _as_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255


def _samples() -> torch.Tensor:
    photos = [T.Resize((SIZE, SIZE))(Image.open(s.path).convert("RGB")) for s in sample_images()]
    assert len(photos) >= 3
    return torch.stack([T.ToTensor()(p) for p in photos])


def test_optimised_images_excite_their_channels_more_than_every_photo_and_noise(model, cm):
    channels = [3, 17]
    # 128 steps: channel 17 climbs slowly and not monotonically (0.47, 0.35, 0.43 after 16, 32, 64
    # steps on one thread, 0.55 after 32 on two: rounding differences steer the walk), against the
    # best photo's 0.53; after 128 steps it is 0.67 on one thread and 0.87 on two.
    vis = visualize(cm, Target("inception3a", 1), channels, steps=128, size=SIZE)
    opt = _branch_maps(model, torch.stack([_as_tensor(v.image) for v in vis]))
    photos = _branch_maps(model, _samples())
    noise = _branch_maps(model, torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)))
    for i, c in enumerate(channels):
        mine = float(opt[i, c].mean())
        assert mine > float(photos[:, c].mean((1, 2)).max())
        assert mine > float(noise[:, c].mean((1, 2)).max())
        # The value it reports is the one the network gives its (unrounded) image.
        assert vis[i].objective == pytest.approx(mine, rel=0.05)


def test_more_steps_climb_higher(model, cm):
    short, long = (visualize(cm, Target("inception3a", 1), [9], steps=s, size=SIZE)[0] for s in (2, 24))
    acts = _branch_maps(model, torch.stack([_as_tensor(short.image), _as_tensor(long.image)]))[:, 9].mean((1, 2))
    assert float(acts[1]) > float(acts[0]) + 0.1


def test_negative_and_neuron_objectives(model, cm):
    photos = _branch_maps(model, _samples())
    # A channel that every photo excites (a ReLU output cannot go below 0: one no photo excites is moot).
    low = int(photos.mean((2, 3)).min(0).values.argmax())
    [neg] = visualize(cm, Target("inception3a", 1, "negative"), [low], steps=24, size=SIZE)
    neurons = visualize(cm, Target("inception3a", 1, "neuron"), [3, 9], steps=24, size=SIZE)
    maps = _branch_maps(model, torch.stack([_as_tensor(v.image) for v in [neg, *neurons]]))
    assert float(maps[0, low].mean()) < float(photos[:, low].mean((1, 2)).min())
    h, w = maps.shape[2:]
    for i, c in enumerate([3, 9], start=1):
        assert float(maps[i, c, h // 2, w // 2]) > float(photos[:, c, h // 2, w // 2].max())


def test_channels_of_one_batch_do_not_mix(cm):
    """Image 0 of a batch depends on its own channel only: the same draws with other neighbours give
    the very same image (a loss or a batch norm over the batch would couple them)."""
    a = visualize(cm, Target("inception3a", 1), [5, 6, 7], steps=3, size=32)
    b = visualize(cm, Target("inception3a", 1), [5, 40, 41], steps=3, size=32)
    assert np.array_equal(a[0].image, b[0].image)
    assert not np.array_equal(a[1].image, b[1].image)


def test_cache_per_model_weights_and_request(tmp_path, cm, monkeypatch):
    t = Target("inception3a", 1)
    first = visualize_cached(cm, "googlenet", "w1", t, [1, 2], steps=2, size=32, directory=tmp_path)
    assert not any(v.cached for v in first)
    calls = []
    real = fv.visualize
    monkeypatch.setattr(fv, "visualize", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    again = visualize_cached(cm, "googlenet", "w1", t, [2, 1, 3], steps=2, size=32, directory=tmp_path)
    assert calls == [[3]] and [v.cached for v in again] == [True, True, False]
    assert np.array_equal(again[1].image, first[0].image) and again[1].objective == pytest.approx(first[0].objective)
    visualize_cached(cm, "googlenet", "w2", t, [1], steps=2, size=32, directory=tmp_path)
    visualize_cached(cm, "googlenet", "w1", t, [1], steps=3, size=32, directory=tmp_path)
    assert calls == [[3], [1], [1]]


def test_progress_and_cancel(cm):
    seen = []
    token = CancelToken()

    def progress(done, total):
        seen.append((done, total))
        if done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        visualize(cm, Target("inception3a", 1), range(4), steps=5, size=32, batch=2, progress=progress, cancel=token)
    assert seen == [(1, 10), (2, 10), (3, 10)]


def test_parse_channels():
    assert parse_channels("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    for bad in ("a", "3-1", "1-", ""):
        with pytest.raises(ValueError):
            parse_channels(bad)
    with pytest.raises(ValueError, match="has 8 channels"):
        parse_channels("0-8", 8)


def test_file_names():
    assert Target("inception4a", 1).file_stem(3) == "inception4a-2-ch003"
    assert Target("Mixed_6e", None, "negative").file_stem(12) == "Mixed_6e-ch012-negative"
