"""The default CPU classification path equals the reference pipeline a user would write — PIL decode,
EXIF transpose, `weights.transforms()` on the PIL image, the plain torchvision network — within 1e-3
of probability, for every image mode and for a big JPEG; the opt-in fast decode is labelled.

The network is GoogLeNet with calibrated random weights (tests/netutil.py): it is hypersensitive to
its input (half a grey level moves its probabilities by more than the tolerance, asserted below), so
an approximate decode or resize cannot pass for the exact one.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageOps

from explorer.cli import main
from explorer.core.classify.inference import FAST_DECODE_NOTICE, Classifier
from explorer.core.model.loading import LoadedModel
from explorer.core.model.weights import WeightsState
from explorer.core.model.zoo import get_spec
from tests.netutil import calibrated_model, calibrated_state_dict, write_weights

TOL = 1e-3
BIG = (2000, 1500)  # the old default decoded this JPEG at 1/4 scale


@functools.cache
def _loaded() -> LoadedModel:
    spec = get_spec("googlenet")
    return LoadedModel(spec, calibrated_model("googlenet"), WeightsState("file", "calibrated"), spec.categories())


@functools.cache
def _plain() -> torch.nn.Module:
    """torchvision's own GoogLeNet, as its pretrained weights build it, with the same weights."""
    model = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    model.load_state_dict(calibrated_state_dict("googlenet"))
    return model.eval()


def reference_rgb(path) -> Image.Image:
    """PIL open → EXIF transpose → RGB. Where Pillow's own convert("RGB") would differ from the
    engine's documented policy (explorer/core/classify/images.py) the policy is written out here: alpha is
    composited onto white, 16-bit greyscale is scaled by 1/257 (Pillow would clip it at 255)."""
    im = ImageOps.exif_transpose(Image.open(path))
    if im.mode in ("RGBA", "LA") or im.mode == "P" and "transparency" in im.info:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    if im.mode.startswith("I"):
        grey = np.rint(np.asarray(im, dtype=np.float64) / 257).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return im.convert("RGB")


def reference_probs(paths) -> torch.Tensor:
    tf = get_spec("googlenet").weights_enum().transforms()
    with torch.no_grad():
        return _plain()(torch.stack([tf(reference_rgb(p)) for p in paths])).softmax(1)


def _smooth(rng, w, h, cells=10) -> np.ndarray:
    low = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    a = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.int16)
    return np.clip(a + rng.integers(-8, 9, (h, w, 1)), 0, 255).astype(np.uint8)  # some texture


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """One file per mode the default path must get right, and a big JPEG."""
    folder = tmp_path_factory.mktemp("modes")
    rng = np.random.default_rng(12)
    rgb = Image.fromarray(_smooth(rng, 320, 240))
    files = {}

    def save(name, im, **kw):
        files[name] = folder / name
        im.save(files[name], **kw)

    save("rgb.png", rgb)
    save("l.png", rgb.convert("L"))
    rgba = rgb.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    rgba.putalpha(Image.fromarray(alpha, "L"))  # transparent on the left, opaque on the right
    save("rgba.png", rgba)
    save("p.png", rgb.quantize(64))
    save("cmyk.jpg", rgb.convert("CMYK"), quality=92)
    grey16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257 + rng.integers(0, 257, (240, 320))).astype(np.uint16)
    save("grey16.png", Image.fromarray(grey16))  # mode I;16
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: viewers rotate it 90° clockwise
    save("rotated.jpg", Image.fromarray(_smooth(rng, 300, 220)), quality=92, exif=exif.tobytes())
    save("big.jpg", Image.fromarray(_smooth(rng, *BIG, cells=16)), quality=90)
    exif[0x0112] = 3
    save("big_rotated_grey.jpg", Image.fromarray(_smooth(rng, 1600, 1200, cells=16)).convert("L"), quality=90,
         exif=exif.tobytes())
    return files


def test_corpus_has_the_modes(corpus):
    modes = {name: Image.open(p).mode for name, p in corpus.items()}
    assert modes == {"rgb.png": "RGB", "l.png": "L", "rgba.png": "RGBA", "p.png": "P", "cmyk.jpg": "CMYK",
                     "grey16.png": "I;16", "rotated.jpg": "RGB", "big.jpg": "RGB", "big_rotated_grey.jpg": "L"}


def test_default_path_equals_the_reference_for_every_mode(corpus):
    """classify (batches decoded on the thread pool) and logits, each within 1e-3 of probability."""
    names = list(corpus)
    paths = [corpus[n] for n in names]
    ref = reference_probs(paths)
    assert len(set(ref.argmax(1).tolist())) >= 3  # the network tells these images apart
    clf = Classifier(_loaded(), "cpu", batch_size=3)  # three batches: the pool decodes one ahead
    results = clf.classify(paths, top=5)
    for name, r, p in zip(names, results, ref):
        assert r.ok and r.notice is None, (name, r.error, r.notice)
        assert [x.index for x in r.top] == p.topk(5).indices.tolist(), name
        delta = max(abs(x.prob - p[x.index].item()) for x in r.top)
        assert delta <= TOL, (name, delta)
    assert (clf.logits(paths).softmax(1) - ref).abs().max().item() <= TOL


def test_the_network_is_sensitive_to_half_a_grey_level(corpus):
    """Why the test above has teeth: the big JPEG's reduced-scale decode (the old default) is within
    about half a grey level of the full one, and moves the probabilities by more than 1e-3."""
    fast = Classifier(_loaded(), "cpu", fast_decode=True)
    ref = reference_probs([corpus["big.jpg"]])[0]
    x_ref = get_spec("googlenet").weights_enum().transforms()(reference_rgb(corpus["big.jpg"]))
    levels = ((fast.preprocess(corpus["big.jpg"]) - x_ref).abs() * 0.226 * 255).mean().item()
    assert 0 < levels < 1.0
    assert (fast.logits([corpus["big.jpg"]]).softmax(1)[0] - ref).abs().max().item() > TOL


def test_window_path_equals_the_reference(corpus, graph_of):
    """`classify_captured` (the window's single image, one forward that keeps every branch)."""
    clf = Classifier(_loaded(), "cpu", graph=graph_of("googlenet"))
    for name in ("big.jpg", "big_rotated_grey.jpg", "rgba.png"):
        out = clf.classify_captured(corpus[name])
        ref = reference_probs([corpus[name]])[0]
        assert out.result.ok and out.result.notice is None
        assert out.picture.size == reference_rgb(corpus[name]).size  # the full decode, upright
        assert max(abs(x.prob - ref[x.index].item()) for x in out.result.top) <= TOL, name


def test_fast_decode_is_opt_in_and_labelled(corpus, graph_of):
    clf = Classifier(_loaded(), "cpu", fast_decode=True, graph=graph_of("googlenet"))
    big, small = clf.classify([corpus["big.jpg"], corpus["rotated.jpg"]])
    assert big.notice == FAST_DECODE_NOTICE and big.to_dict()["notice"] == FAST_DECODE_NOTICE
    assert small.notice is None  # too small to be reduced: decoded exactly, so not labelled
    assert clf.classify_captured(corpus["big.jpg"]).result.notice == FAST_DECODE_NOTICE
    clf.fast_decode = False  # the window's checkbox flips it on a ready classifier
    assert clf.classify([corpus["big.jpg"]])[0].notice is None


def test_cli_fast_decode_flag_labels_its_output(corpus, tmp_path, capsys):
    weights = write_weights(calibrated_model("googlenet"), tmp_path / "w.safetensors")
    base = ["classify", str(corpus["big.jpg"]), "--model", "googlenet", "--weights", str(weights),
            "--device", "cpu", "--format", "jsonl"]
    assert main(base + ["--fast-decode"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["notice"] == FAST_DECODE_NOTICE and FAST_DECODE_NOTICE in err
    for extra in ([], ["--exact-decode"]):  # the default, and its old spelling (still accepted)
        assert main(base + extra) == 0
        out, err = capsys.readouterr()
        got = json.loads(out)
        assert got["notice"] is None and err == ""
        ref = reference_probs([corpus["big.jpg"]])[0]
        assert max(abs(x["prob"] - ref[x["index"]].item()) for x in got["top"]) <= TOL
    with pytest.raises(SystemExit) as e:
        main(base + ["--fast-decode", "--exact-decode"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["inception_v3", "inception_v4", "inception_resnet_v2"])
def test_family_presets_get_the_reference_input_bit_for_bit(corpus, name):
    """Models with their own preset (v3: torchvision's enum; v4 and Inception-ResNet-v2: timm's data
    config, bicubic, resize 341/333): the default path's input is the preset applied to the PIL image,
    exactly — for the big and the EXIF-rotated JPEGs, where the old default decoded at a reduced scale."""
    spec = get_spec(name)
    clf = Classifier(LoadedModel(spec, None, WeightsState("random", "none"), spec.categories()), "cpu")
    tf = spec.transforms()
    for file in ("big.jpg", "big_rotated_grey.jpg", "cmyk.jpg"):
        assert torch.equal(clf.preprocess(corpus[file]), tf(reference_rgb(corpus[file]))), file
