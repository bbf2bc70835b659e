"""Classification: our fast path against torchvision's own transforms and plain model, on the same
(calibrated random) weights; bad files inside batches; progress, cancel, CPU fallback."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageOps

from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.images import load_image
from explorer.core.inference import (
    Classifier,
    DeviceUnavailableError,
    _orient_tensor,
    resolve_device,
)
from explorer.core.loading import LoadedModel, load_model
from explorer.core.weights import WeightsState
from explorer.core.zoo import get_spec
from tests.netutil import calibrated_model, calibrated_state_dict

MODELS = ["googlenet", "inception_v3"]
CUDA = torch.cuda.is_available()


@functools.cache
def loaded(name: str) -> LoadedModel:
    """Shared between tests: a Classifier copies the module, never changes it."""
    spec = get_spec(name)
    return LoadedModel(spec, calibrated_model(name), WeightsState("file", "calibrated"), spec.categories())


@functools.cache
def classifier(name: str) -> Classifier:
    return Classifier(loaded(name), "cpu")


def plain_torchvision(name: str) -> torch.nn.Module:
    """The reference: torchvision's own builder, as its pretrained weights build it, same weights."""
    build = {"googlenet": torchvision.models.googlenet, "inception_v3": torchvision.models.inception_v3}[name]
    model = build(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    model.load_state_dict(calibrated_state_dict(name))
    return model.eval()


def reference_logits(name: str, paths, device: str = "cpu") -> torch.Tensor:
    """PIL open → EXIF orientation → RGB → weights.transforms() → plain torchvision forward."""
    return _reference_logits(name, tuple(str(p) for p in paths), device).clone()


@functools.cache
def _reference_logits(name: str, paths: tuple[str, ...], device: str) -> torch.Tensor:
    tf = get_spec(name).weights_enum().transforms()
    model = _plain(name).to(device)
    xs = [tf(ImageOps.exif_transpose(Image.open(p)).convert("RGB")) for p in paths]
    with torch.no_grad():
        out = model(torch.stack(xs).to(device)).float().cpu()
    model.cpu()
    return out


_plain = functools.cache(plain_torchvision)


def _smooth(rng, w, h, cells=8) -> np.ndarray:
    low = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC))


def make_images(folder: Path) -> list[Path]:
    """Gradients, noise, shapes — JPEG and PNG, several sizes and aspect ratios."""
    rng = np.random.default_rng(3)
    out = []
    yy, xx = np.mgrid[0:240, 0:320]
    grad = np.stack([xx * 255 // 319, yy * 255 // 239, (xx + yy) * 255 // 558], -1).astype(np.uint8)
    specs = [
        ("gradient.png", Image.fromarray(grad)),
        ("noise.jpg", Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))),
        ("smooth_tall.jpg", Image.fromarray(_smooth(rng, 180, 400))),
        ("smooth_small.png", Image.fromarray(_smooth(rng, 64, 48, 4))),
    ]
    shapes = Image.new("RGB", (360, 270), (20, 40, 160))
    px = shapes.load()
    for y in range(60, 200):
        for x in range(90, 300):
            if (x - 190) ** 2 / 90**2 + (y - 130) ** 2 / 60**2 < 1:
                px[x, y] = (240, 200, 30)
    specs.append(("shapes.jpg", shapes))
    for name, im in specs:
        p = folder / name
        im.save(p, quality=90) if name.endswith(".jpg") else im.save(p)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return make_images(tmp_path_factory.mktemp("images"))


def _assert_same(ours: torch.Tensor, ref: torch.Tensor, rel: float = 1e-4):
    scale = ref.abs().max().item()
    assert (ours - ref).abs().max().item() <= rel * scale, f"max diff {(ours - ref).abs().max().item()} vs scale {scale}"
    assert torch.equal(ours.topk(5, dim=1).indices, ref.topk(5, dim=1).indices)


def test_calibrated_models_tell_images_apart(images):
    for name in MODELS:
        top1 = reference_logits(name, images).argmax(1).tolist()
        assert len(set(top1)) >= 3, (name, top1)


@pytest.mark.parametrize("name", MODELS)
def test_cpu_path_matches_torchvision(name, images):
    clf = classifier(name)
    ref = reference_logits(name, images)
    _assert_same(clf.logits(images), ref)
    results = clf.classify(images[:3], top=5, batch_size=2)
    probs = ref.softmax(1)
    for r, p in zip(results, probs):
        assert r.ok and r.device == "cpu"
        want = p.topk(5)
        assert [x.index for x in r.top] == want.indices.tolist()
        assert np.allclose([x.prob for x in r.top], want.values.tolist(), rtol=1e-3, atol=1e-6)
        assert [x.label for x in r.top] == [get_spec(name).weights_enum().meta["categories"][i] for i in want.indices]
        assert set(r.timings_ms) == {"decode", "preprocess", "forward", "total"}


def test_unoptimised_model_is_bit_exact(images):
    clf = Classifier(loaded("googlenet"), "cpu", optimize=False)
    assert torch.equal(clf.logits(images), reference_logits("googlenet", images))


def test_exif_rotated_jpeg_matches_upright_reference(tmp_path):
    rng = np.random.default_rng(5)
    upright = Image.fromarray(_smooth(rng, 300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: the viewer turns it 90° clockwise
    p = tmp_path / "rot.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(p, quality=95, exif=exif.tobytes())
    clf = classifier("googlenet")
    _assert_same(clf.logits([p]), reference_logits("googlenet", [p]))


def test_jpeg_draft_is_close_to_full_decode(tmp_path):
    """A big JPEG is decoded at 1/2..1/8 scale then resized exactly: inputs differ by rounding only."""
    rng = np.random.default_rng(11)
    big = Image.fromarray(_smooth(rng, 1203, 905, 12))
    exif = Image.Exif()
    exif[0x0112] = 8
    p = tmp_path / "big.jpg"
    big.save(p, quality=92, exif=exif.tobytes())
    random = load_model("googlenet", weights="none")  # preprocessing only: any weights will do
    clf = Classifier(random, "cpu")
    li = load_image(p, draft_short_side=clf.resize_size)
    assert li.draft_scale == 2 and li.size == (905, 1203)
    ours = clf.preprocess(p)
    ref = get_spec("googlenet").transforms()(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    levels = (ours - ref).abs() * 0.226 * 255  # back to 8-bit grey levels, roughly
    assert ours.shape == ref.shape and levels.mean() < 1.0 and levels.max() < 12
    exact = Classifier(random, "cpu", jpeg_draft=False)
    assert torch.equal(exact.preprocess(p), ref)
    for mode in ("L", "CMYK"):  # greyscale and CMYK JPEGs take the draft path too
        q = tmp_path / f"big_{mode}.jpg"
        big.convert(mode).save(q, quality=92)
        assert load_image(q, draft_short_side=clf.resize_size).draft_scale == 2
        ref = get_spec("googlenet").transforms()(Image.open(q).convert("RGB"))
        assert ((clf.preprocess(q) - ref).abs() * 0.226 * 255).mean() < 1.0


def test_inputs_as_bytes_and_pil_images(images):
    clf = classifier("googlenet")
    p = images[1]
    by_path = clf.classify([p])[0]
    by_bytes, by_image = clf.classify([p.read_bytes(), Image.open(p)], names=["clip", "pasted"])
    assert by_bytes.source == "clip" and by_image.source == "pasted"
    for r in (by_bytes, by_image):
        assert [x.index for x in r.top] == [x.index for x in by_path.top]
    assert [x.index for x in by_path.top] == reference_logits("googlenet", images)[1].topk(5).indices.tolist()


def test_bad_files_do_not_stop_the_batch(images, tmp_path):
    from tests.netutil import bad_corpus

    bad = {name: path for name, (path, _) in bad_corpus(tmp_path).items()}
    batch = [images[0], bad["empty.jpg"], bad["truncated.jpg"], images[2], bad["text.jpg"], bad["bomb.png"],
             bad["missing.jpg"], bad["folder.jpg"], bad["corrupt.png"], images[4]]
    clf = classifier("googlenet")
    results = clf.classify(batch, batch_size=4)
    assert [r.source for r in results] == [str(p) for p in batch]
    assert [r.ok for r in results] == [True, False, False, True, False, False, False, False, False, True]
    for r in results:
        assert (len(r.top) == 5) == r.ok and (r.error is None) == r.ok
        assert r.error is None or ("\n" not in r.error and r.error)
    ref = reference_logits("googlenet", images)[[0, 2, 4]].topk(5).indices.tolist()
    assert [[x.index for x in r.top] for r in results if r.ok] == ref


def test_top_k_and_validation(images):
    clf = classifier("googlenet")
    assert len(clf.classify(images[:1], top=3)[0].top) == 3
    assert len(clf.classify(images[:1], top=5000)[0].top) == 1000
    with pytest.raises(ValueError):
        clf.classify(images[:1], top=0)


def test_progress_and_cancel(images):
    clf = classifier("googlenet")
    seen = []
    clf.classify(images[:3], batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3), (2, 3), (3, 3)]
    token = CancelToken()
    got = []
    with pytest.raises(Cancelled):
        for batch in clf.iter_classify(images, batch_size=1, cancel=token):
            got.extend(batch)
            token.cancel()
    assert len(got) == 1 and got[0].ok


def test_cuda_out_of_memory_falls_back_to_cpu(images, monkeypatch):
    clf = Classifier(loaded("googlenet"), "cpu")
    clf.device = "cuda"  # pretend; the CUDA batch below fails as if the GPU were full

    def full(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(clf, "_classify_batch_cuda", full)
    results = clf.classify(images[:2])
    assert clf.device == "cpu" and all(r.ok and r.device == "cpu" for r in results)
    assert "out of memory" in results[0].notice and clf.notices == [results[0].notice]
    assert [x.index for x in results[0].top] == reference_logits("googlenet", images)[0].topk(5).indices.tolist()


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if CUDA else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    if not CUDA:
        with pytest.raises(DeviceUnavailableError):
            resolve_device("cuda")
    assert classifier("googlenet").warm_up() is False


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tensor_orientation_matches_pillow(orientation):
    from explorer.core.images import _TRANSPOSE
    from torchvision.transforms.functional import pil_to_tensor

    im = Image.fromarray(np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8))
    want = im if orientation == 1 else im.transpose(_TRANSPOSE[orientation])
    assert torch.equal(_orient_tensor(pil_to_tensor(im), orientation), pil_to_tensor(want))


# ---------------------------------------------------------------- GPU


@pytest.fixture
def no_tf32():
    """Full float32 convolutions and matmuls, so that the GPU is compared on equal terms."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", MODELS)
def test_gpu_path_matches_torchvision(name, images, no_tf32):
    """On the GPU the transform runs on uint8 tensors: the reference is the same `weights.transforms()`
    applied to the same decoded pixels (nvjpeg for JPEGs, PIL for the rest) with the plain model."""
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.functional import pil_to_tensor

    tf = get_spec(name).weights_enum().transforms()
    xs = []
    for p in images:
        if p.suffix == ".jpg":
            x = decode_jpeg(torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8),
                            mode=ImageReadMode.RGB, device="cuda")
        else:
            x = pil_to_tensor(Image.open(p).convert("RGB")).cuda()
        xs.append(tf(x))
    model = plain_torchvision(name).cuda()
    with torch.no_grad():
        ref = model(torch.stack(xs)).float().cpu()
    clf = Classifier(loaded(name), "cuda")
    assert clf.warm_up() and clf.graph_ready
    _assert_same(clf.logits(images), ref, rel=1e-4)
    # Batched classification and the batch-1 CUDA graph give the same classes.
    results = clf.classify(images, batch_size=64)
    assert [[x.index for x in r.top] for r in results] == ref.topk(5, dim=1).indices.tolist()
    assert all(r.device == "cuda" and r.ok for r in results)
    one = clf.classify(images[:1])[0]
    assert [x.index for x in one.top] == ref[0].topk(5).indices.tolist()
    # Against the CPU path's pixels (libjpeg + PIL resize): rounding differences only.
    cpu = Classifier(loaded(name), "cpu", jpeg_draft=False)
    for p, x in zip(images, xs):
        levels = (x.cpu() - cpu.preprocess(p)).abs() * 0.226 * 255
        assert levels.mean() < 1.0, p.name


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_exif_orientation(tmp_path):
    """nvjpeg ignores EXIF; we turn the decoded tensor ourselves, as exif_transpose turns the image."""
    from torchvision.transforms.functional import pil_to_tensor

    rng = np.random.default_rng(5)
    upright = Image.fromarray(_smooth(rng, 300, 200))
    clf = Classifier(loaded("googlenet"), "cuda")
    tf = get_spec("googlenet").weights_enum().transforms()
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        p = tmp_path / f"o{orientation}.jpg"
        upright.save(p, quality=95, exif=exif.tobytes())
        want = tf(pil_to_tensor(ImageOps.exif_transpose(Image.open(p)).convert("RGB")).cuda())
        levels = (clf.device_input(p) - want).abs() * 0.226 * 255
        # nvjpeg vs libjpeg: a fraction of a grey level; a wrong turn: tens of levels.
        assert levels.mean() < 1.0, orientation


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_batch_with_bad_files(images, tmp_path):
    from tests.netutil import bad_corpus

    bad = [p for p, _ in bad_corpus(tmp_path).values()]
    clf = Classifier(loaded("googlenet"), "cuda")
    results = clf.classify([images[1], *bad, images[4]])
    assert results[0].ok and results[-1].ok and not any(r.ok for r in results[1:-1])
    assert all(r.device == "cuda" for r in results[:1])
