"""The family models classify like the torchvision ones: their weight files' preprocessing, ImageNet's
class names, and one captured forward that agrees with the plain network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.core.classify.inference import Classifier
from explorer.core.model.loading import load_model
from explorer.core.model.zoo import get_spec
from netutil import calibrated_state_dict, write_weights

FAMILY = ["googlenet_paper", "bn_inception", "inception_v4", "inception_resnet_v1", "inception_resnet_v2"]
#: Inception-ResNet-v1 is built by the same code as v2 (and calibrating it costs half a minute more).
CLASSIFIED = [n for n in FAMILY if n != "inception_resnet_v1"]


def _photo(seed: int, size=(410, 330)) -> Image.Image:
    """A varied RGB picture (smooth colour fields plus edges), not square."""
    rng = np.random.default_rng(seed)
    low = rng.random((5, 4, 3))
    big = np.kron(low, np.ones((size[1] // 4 + 1, size[0] // 5 + 1, 1)))[: size[1], : size[0]]
    big[rng.integers(0, size[1] - 60):, :, rng.integers(0, 3)] *= 0.3
    return Image.fromarray((big * 255).astype(np.uint8))


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_preprocessing_is_timms_for_its_weight_files(name):
    timm = pytest.importorskip("timm")
    from timm.data import create_transform, resolve_data_config

    ours = get_spec(name).transforms()
    theirs = create_transform(**resolve_data_config({}, model=timm.create_model(name, pretrained=False)))
    for seed in range(3):
        im = _photo(seed)
        a, b = ours(im), theirs(im)
        assert a.shape == b.shape == (3, 299, 299)
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


@pytest.mark.parametrize("name", FAMILY)
def test_every_family_model_has_a_preprocessing_and_imagenet_names(name):
    import torchvision.models

    spec = get_spec(name)
    assert spec.weights is None and spec.preprocessing is not None
    t = spec.transforms()
    assert list(t.crop_size) == [spec.native_size[0]] and t.resize_size[0] > t.crop_size[0]
    assert spec.categories() == list(torchvision.models._meta._IMAGENET_CATEGORIES)


@pytest.mark.parametrize("name", CLASSIFIED)
def test_family_model_classifies_with_imagenet_names_in_one_captured_forward(name, graph_of, tmp_path):
    spec = get_spec(name)
    weights = write_weights(calibrated_state_dict(name), tmp_path / f"{name}.safetensors")
    loaded = load_model(name, weights=str(weights))
    assert loaded.weights.kind != "random"
    import torchvision.models

    assert loaded.categories == list(torchvision.models._meta._IMAGENET_CATEGORIES)

    clf = Classifier(loaded, graph=graph_of(name))
    size = spec.native_size[0]
    paths = []
    for seed in range(3):
        p = tmp_path / f"img{seed}.png"
        _photo(seed).save(p)
        paths.append(p)

    plain = loaded.module.eval()
    top1 = set()
    for p in paths:
        out = clf.classify_captured(p)
        assert out.result.ok and len(out.result.top) == 5
        assert all(pred.label in loaded.categories for pred in out.result.top)
        assert out.x.shape[-2:] == (size, size)
        # The same picture through the loaded (unfolded) network and the spec's own transform.
        with torch.no_grad():
            ref = plain(loaded.transforms()(Image.open(p).convert("RGB"))[None])
        logits = out.capture.logits.float().cpu()
        # Batch norms folded into the convolutions and channels-last: float rounding, deep networks.
        assert torch.allclose(logits, ref, atol=3e-3 * ref.abs().max().item())
        assert out.result.top[0].index == int(ref.argmax())
        assert set(out.capture.branches) == {n.name for n in graph_of(name).nodes() if n.is_block}
        top1.add(out.result.top[0].index)
    assert len(top1) > 1, "the test network must tell the pictures apart"
