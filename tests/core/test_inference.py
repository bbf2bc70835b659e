"""Classification: our fast path against torchvision's own transforms and plain model, on the same
(calibrated random) weights; bad files inside batches; progress, cancel, CPU fallback."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageOps

from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.classify.images import load_image
from explorer.core.classify.inference import (
    Classifier,
    DeviceUnavailableError,
    _orient_tensor,
    resolve_device,
)
from explorer.core.model.loading import LoadedModel, load_model
from explorer.core.model.weights import WeightsState
from explorer.core.model.zoo import get_spec
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


def test_fast_decode_is_close_to_full_decode(tmp_path):
    """With fast_decode, a big JPEG is decoded at 1/2..1/8 scale then resized exactly: inputs differ
    by rounding only. The default decodes it whole: its input is the reference's, bit for bit."""
    rng = np.random.default_rng(11)
    big = Image.fromarray(_smooth(rng, 1203, 905, 12))
    exif = Image.Exif()
    exif[0x0112] = 8
    p = tmp_path / "big.jpg"
    big.save(p, quality=92, exif=exif.tobytes())
    random = load_model("googlenet", weights="none")  # preprocessing only: any weights will do
    clf = Classifier(random, "cpu", fast_decode=True)
    li = load_image(p, draft_short_side=clf.resize_size)
    assert li.draft_scale == 2 and li.size == (905, 1203)
    ours = clf.preprocess(p)
    ref = get_spec("googlenet").transforms()(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    levels = (ours - ref).abs() * 0.226 * 255  # back to 8-bit grey levels, roughly
    assert ours.shape == ref.shape and levels.mean() < 1.0 and levels.max() < 12
    exact = Classifier(random, "cpu")
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

    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(clf.batches, "classify_batch_cuda", full)
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
    from explorer.core.classify.images import _TRANSPOSE
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
    applied to PIL's decoded pixels (these JPEGs are small and chroma-subsampled, which the GPU path
    leaves to PIL: nvjpeg's chroma differs from libjpeg's by up to 76 grey levels on noise.jpg)
    with the plain model."""
    from torchvision.transforms.functional import pil_to_tensor

    tf = get_spec(name).weights_enum().transforms()
    xs = [tf(pil_to_tensor(Image.open(p).convert("RGB")).cuda()) for p in images]
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
    # Against the CPU path's pixels (PIL resize): the tensor resize's rounding only.
    cpu = Classifier(loaded(name), "cpu")
    for p, x in zip(images, xs):
        levels = (x.cpu() - cpu.preprocess(p)).abs() * 0.226 * 255
        assert levels.mean() < 0.5 and levels.max() < 1.5, p.name


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_exif_orientation(tmp_path):
    """nvjpeg ignores EXIF; we turn the decoded tensor ourselves, as exif_transpose turns the image.
    (4:4:4 chroma, which nvjpeg decodes at this size.)"""
    from torchvision.transforms.functional import pil_to_tensor

    rng = np.random.default_rng(5)
    upright = Image.fromarray(_smooth(rng, 300, 200))
    clf = Classifier(loaded("googlenet"), "cuda")
    tf = get_spec("googlenet").weights_enum().transforms()
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        p = tmp_path / f"o{orientation}.jpg"
        upright.save(p, quality=95, exif=exif.tobytes(), subsampling=0)
        want = tf(pil_to_tensor(ImageOps.exif_transpose(Image.open(p)).convert("RGB")).cuda())
        levels = (clf.device_input(p) - want).abs() * 0.226 * 255
        # nvjpeg vs libjpeg: a fraction of a grey level; a wrong turn: tens of levels.
        assert levels.mean() < 0.5, orientation


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_batch_with_bad_files(images, tmp_path):
    from tests.netutil import bad_corpus

    bad = [p for p, _ in bad_corpus(tmp_path).values()]
    clf = Classifier(loaded("googlenet"), "cuda")
    results = clf.classify([images[1], *bad, images[4]])
    assert results[0].ok and results[-1].ok and not any(r.ok for r in results[1:-1])
    assert all(r.device == "cuda" for r in results[:1])


# ---------------------------------------------------------------- one forward that classifies and captures


def _count_forwards(module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    """Batch size of each forward of the network: a pre-hook on its first convolution, which every
    way of running it (the module itself, a CaptureModel traced over it) calls once per forward."""
    first = next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    calls: list[int] = []
    return calls, first.register_forward_pre_hook(lambda m, args: calls.append(int(args[0].shape[0])))


def _hooked_outputs(model, graph, x) -> tuple[dict, dict]:
    """What forward hooks on the plain model see for x: every node's output (stem layers, blocks,
    head) and the output of every branch that ends in a BasicConv2d."""
    outputs, branches, handles = {}, {}, []
    for node in graph.nodes():
        if node.training_only or node.kind == "input":
            continue
        handles.append(model.get_submodule(node.name).register_forward_hook(
            lambda m, i, o, key=node.name: outputs.__setitem__(key, o)))
        for k, branch in enumerate(node.branches):
            last = branch.all_layers()[-1]
            if last.type == "conv" and not branch.parallel:
                handles.append(model.get_submodule(last.name.rsplit(".", 1)[0]).register_forward_hook(
                    lambda m, i, o, key=(node.name, k): branches.__setitem__(key, o)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return outputs, branches


def _assert_folded_equal(ours: torch.Tensor, ref: torch.Tensor, what) -> None:
    """Equal up to batch-norm folding: measured ≤ 1.5e-4 of the tensor's largest value (Mixed_7c)."""
    assert ours.shape == ref.shape, what
    scale = ref.abs().max().item()
    assert (ours.float() - ref).abs().max().item() <= 1e-3 * scale + 1e-6, what


@pytest.mark.parametrize("name", MODELS)
def test_classify_captured_is_one_forward_that_classifies_and_captures(name, images, graph_of):
    graph = graph_of(name)
    clf = Classifier(loaded(name), "cpu", graph=graph)
    clf.warm_up()
    assert clf.can_capture and clf.capture_error is None
    # The capture model is traced over the classifier's own (BN-folded) device copy, not a second network.
    first = next(m for m in clf.module.modules() if isinstance(m, torch.nn.Conv2d))
    assert any(m is first for m in clf.capture_model().modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in clf.capture_model().modules())

    plain = clf.classify(images)
    calls, handle = _count_forwards(clf.module)
    top1 = set()
    try:
        for path, want in zip(images, plain):
            calls.clear()
            out = clf.classify_captured(path, top=5)
            assert calls == [1], path.name  # one forward, of one image, gave all of it
            r = out.result
            assert r.ok and r.source == str(path) and r.image_size == want.image_size
            assert [p.index for p in r.top] == [p.index for p in want.top]
            assert [p.prob for p in r.top] == pytest.approx([p.prob for p in want.top], abs=1e-5)
            # The top-5 is the capture's own logits, exactly.
            values, indices = out.capture.logits.float().softmax(1)[0].topk(5)
            assert [p.index for p in r.top] == indices.tolist() and [p.prob for p in r.top] == values.tolist()
            assert set(r.timings_ms) == {"decode", "preprocess", "forward", "total"}
            top1.add(r.top[0].index)
    finally:
        handle.remove()
    assert len(top1) >= 3  # different images, different classes: the comparison has teeth

    # Decoded once, preprocessed as `classify` does; the picture is that decode, the RGB that input.
    x = out.x
    assert x.shape == (1, 3, clf.crop_size, clf.crop_size)
    assert torch.equal(x.contiguous(), clf.preprocess(images[-1])[None])
    assert out.picture.size == load_image(images[-1]).image.size
    mean, std = torch.tensor(clf.transforms.mean).view(3, 1, 1), torch.tensor(clf.transforms.std).view(3, 1, 1)
    assert np.abs(out.rgb.astype(float) - ((x[0] * std + mean) * 255).permute(1, 2, 0).numpy()).max() <= 0.5 + 1e-3

    # Every captured tensor is what hooks on the plain (unfolded) model see for the same input.
    cap = out.capture
    assert cap.graph_name == name
    outputs, branches = _hooked_outputs(calibrated_model(name), graph, x.contiguous())
    assert set(outputs) == set(cap.outputs) and len(branches) > 20
    for node, ref in outputs.items():
        _assert_folded_equal(cap.outputs[node], ref, node)
    for (block, k), ref in branches.items():
        _assert_folded_equal(cap.branch(block, k), ref, (block, k))
    for block, tensors in cap.branches.items():
        assert all(t is not None for t in tensors), block


def test_classify_captured_bad_files_cancel_and_no_graph(images, graph_of, tmp_path):
    from tests.netutil import bad_corpus

    clf = Classifier(loaded("googlenet"), "cpu", graph=graph_of("googlenet"))
    calls, handle = _count_forwards(clf.module)
    try:
        for path, word in bad_corpus(tmp_path).values():
            out = clf.classify_captured(path)
            assert not out.result.ok and word.lower() in out.result.error.lower(), (path.name, out.result.error)
            assert out.capture is None and out.x is None
        token = CancelToken()
        token.cancel()
        with pytest.raises(Cancelled):
            clf.classify_captured(images[0], cancel=token)
        assert calls == []  # no forward for a file that cannot be read, nor after Cancel
    finally:
        handle.remove()
    bare = Classifier(loaded("googlenet"), "cpu")
    assert not bare.can_capture
    with pytest.raises(RuntimeError, match="block graph"):
        bare.classify_captured(images[0])
    bare.set_graph(graph_of("googlenet"))
    assert bare.classify_captured(images[0]).capture.graph_name == "googlenet"


def test_a_network_that_does_not_match_its_graph_is_reported_not_captured(images, graph_of):
    clf = Classifier(loaded("googlenet"), "cpu", graph=graph_of("inception_v3"))
    assert not clf.warm_up()
    assert not clf.can_capture and "Activations unavailable" in clf.notices[-1]
    assert clf.classify(images[:1])[0].ok  # plain classification is unaffected


def test_display_picture_shrinks_on_the_device_side():
    from explorer.core.classify.inference import _display_picture

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (3, 300, 200), dtype=np.uint8)
    small = _display_picture(torch.from_numpy(pixels), 100)
    assert small.mode == "RGB" and small.size == (67, 100)
    assert np.array_equal(np.asarray(_display_picture(torch.from_numpy(pixels), None)), pixels.transpose(1, 2, 0))
    grey = _display_picture(torch.from_numpy(pixels[:1]), 1000)
    assert grey.size == (200, 300) and np.array_equal(np.asarray(grey)[..., 2], pixels[0])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_capture_stays_on_the_device(images, graph_of, no_tf32, tmp_path):
    from explorer.core.microscope.activations import feature_maps

    clf = Classifier(loaded("googlenet"), "cuda", graph=graph_of("googlenet"))
    clf.warm_up()
    jpeg = tmp_path / "noise_444.jpg"  # full-resolution chroma: nvjpeg decodes it at this size
    Image.open(images[1]).save(jpeg, quality=95, subsampling=0)
    [want] = clf.classify([jpeg])
    calls, handle = _count_forwards(clf.module)
    try:
        out = clf.classify_captured(jpeg, display_max=100)  # decoded by nvjpeg: shrunk on the device
    finally:
        handle.remove()
    assert calls == [1]
    cap = out.capture
    tensors = [cap.logits, *cap.outputs.values(), *(t for ts in cap.branches.values() for t in ts)]
    assert len(tensors) > 50 and all(t.device.type == "cuda" for t in tensors)
    assert out.x.device.type == "cuda" and out.result.device.startswith("cuda")
    assert [p.index for p in out.result.top] == [p.index for p in want.top]
    assert isinstance(out.rgb, np.ndarray) and out.rgb.shape == (224, 224, 3)
    assert max(out.picture.size) == 100 and out.result.image_size == (200, 300)
    # Only what a view shows crosses to the CPU, and it is the device tensor's content.
    t = cap.branch("inception4a", 1)
    fm = feature_maps(t)
    assert np.array_equal(fm.maps, t[0].float().cpu().numpy()) and t.device.type == "cuda"
