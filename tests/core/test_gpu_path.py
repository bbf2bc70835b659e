"""The CUDA code path of `Classifier`, run on the CPU: the CUDA calls it makes (device context,
streams, graph capture, events, synchronisation, free memory) are replaced by recording fakes, and
the tensors stay on the CPU. What a GPU alone can show is in the `gpu`-marked tests at the end."""

from __future__ import annotations

import contextlib
import functools
import io
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from explorer.core.classify.device import DeviceNetworks
from explorer.core.classify.inference import NVJPEG_MIN_SCALE, Classifier, DeviceUnavailableError, resolve_device
from explorer.core.model.loading import LoadedModel
from explorer.core.model.weights import WeightsState
from explorer.core.model.zoo import get_spec

CUDA = torch.cuda.is_available()
OOM = "CUDA out of memory. Tried to allocate 30.00 MiB"
NO_KERNEL = "CUDA error: no kernel image is available for execution on the device"


@functools.cache
def loaded() -> LoadedModel:
    spec = get_spec("googlenet")
    torch.manual_seed(0)
    return LoadedModel(spec, spec.build().eval(), WeightsState("random", "seed 0"), spec.categories())


@functools.cache
def calibrated() -> LoadedModel:
    """Calibrated random weights: logits spread like a trained network's, images told apart."""
    from tests.netutil import calibrated_model

    spec = get_spec("googlenet")
    return LoadedModel(spec, calibrated_model("googlenet"), WeightsState("file", "calibrated"), spec.categories())


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> list[Path]:
    """Six small photo-like JPEGs, each different, with full-resolution chroma (4:4:4): nvjpeg decodes
    those at any size (a small chroma-subsampled JPEG goes to PIL, see the test of that rule)."""
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(7)
    out = []
    for i, (w, h) in enumerate([(96, 64), (64, 96), (80, 80), (120, 72), (72, 120), (100, 90)]):
        low = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        p = folder / f"p{i}.jpg"
        Image.fromarray(low).resize((w, h), Image.BICUBIC).save(p, quality=92, subsampling=0)
        out.append(p)
    return out


def reference_probs(paths) -> torch.Tensor:
    """weights.transforms() on the uint8 tensor of each image, the plain model, softmax."""
    tf = get_spec("googlenet").weights_enum().transforms()
    with torch.no_grad():
        return loaded().module(torch.stack([tf(pil_to_tensor(Image.open(p).convert("RGB"))) for p in paths])).softmax(1)


def pil_reference_probs(paths) -> torch.Tensor:
    """torchvision's reference: weights.transforms() on the PIL image, the plain model, softmax."""
    tf = get_spec("googlenet").weights_enum().transforms()
    with torch.no_grad():
        return loaded().module(torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])).softmax(1)


class NoKernel(torch.nn.Module):
    """A network whose every forward fails as on a GPU the wheel has no kernels for."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raise torch.AcceleratorError(NO_KERNEL)


class FakeCuda:
    """Records what the code asks of CUDA: the current device (per thread, as CUDA keeps it), graph
    captures (which device they ran on, how many at once), synchronisations, events."""

    def __init__(self, monkeypatch):
        self.local = threading.local()
        self.capture_devices: list[int] = []
        self.active = self.most_at_once = 0
        self.syncs = 0
        self.free = 80 * 2**30
        self.guard = threading.Lock()
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "device", self.device)
        monkeypatch.setattr(cuda, "Stream", lambda device=None: _FakeStream())
        monkeypatch.setattr(cuda, "current_stream", lambda device=None: _FakeStream())
        monkeypatch.setattr(cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(cuda, "CUDAGraph", _FakeGraph)
        monkeypatch.setattr(cuda, "graph", self.graph)
        monkeypatch.setattr(cuda, "synchronize", self.synchronize)
        monkeypatch.setattr(cuda, "Event", _FakeEvent)
        monkeypatch.setattr(cuda, "empty_cache", lambda: None)
        monkeypatch.setattr(cuda, "mem_get_info", lambda device=None: (self.free, 80 * 2**30))

    @property
    def current(self) -> int:
        return getattr(self.local, "current", 0)

    @contextlib.contextmanager
    def device(self, device):
        index = torch.device(device).index if str(device).startswith("cuda") else None
        saved = self.current
        self.local.current = saved if index is None else index
        try:
            yield
        finally:
            self.local.current = saved

    @contextlib.contextmanager
    def graph(self, g, *args, **kwargs):
        with self.guard:
            self.active += 1
            self.most_at_once = max(self.most_at_once, self.active)
            self.capture_devices.append(self.current)
        try:
            time.sleep(0.2)  # long enough for a second thread's capture to overlap
            yield
        finally:
            with self.guard:
                self.active -= 1

    def synchronize(self, device=None):
        self.syncs += 1


class _FakeStream:
    def wait_stream(self, other):
        pass


class _FakeGraph:
    def replay(self):
        raise AssertionError("replay is not simulated on the CPU")


class _FakeEvent:
    def __init__(self, enable_timing=False):
        self.t = None

    def record(self, stream=None):
        self.t = time.perf_counter()

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3


@pytest.fixture
def tf32_on():
    """torch's default for convolutions (TF32) on matmuls too; the flags are restored afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture
def fake_cuda(monkeypatch):
    return FakeCuda(monkeypatch)


def gpu_classifier(device: str = "cuda", **kwargs) -> Classifier:
    """A Classifier that believes it is on `device`; its device copy of the network is on the CPU."""
    clf = Classifier(loaded(), "cpu", **kwargs)
    clf.device = device
    clf.networks.modules[device] = clf.networks.module("cpu")
    return clf


class _CpuAsGpuNetworks(DeviceNetworks):
    """Networks on the CPU that say they are on a GPU."""

    on_cuda = True


def cpu_as_gpu(**kwargs) -> Classifier:
    """A Classifier that takes the CUDA batch path (nvjpeg, on-device transforms, events) with CPU
    tensors."""
    clf = Classifier(loaded(), "cpu", **kwargs)
    clf.networks.__class__ = _CpuAsGpuNetworks
    return clf


def cpu_nvjpeg(clf, calls: list[int], fail_above: int | None = None):
    """Stand-in for nvjpeg: PIL decodes to a uint8 tensor. More than `fail_above` images in one call
    fail the way torchvision reports nvjpeg's allocator failure."""

    def decode(datas, device):
        calls.append(len(datas))
        if fail_above is not None and len(datas) > fail_above:
            raise RuntimeError("Error while decoding JPEG images: 5")
        return [pil_to_tensor(Image.open(io.BytesIO(d)).convert("RGB")) for d in datas]

    clf.decoder.decode_jpegs_cuda = decode


def test_small_chroma_subsampled_jpegs_are_decoded_by_pil(fake_cuda, tmp_path):
    """nvjpeg's chroma upsampling differs from libjpeg's by up to tens of grey levels on colour edges
    (bench_gpu_input on an H100): it decodes only JPEGs whose chroma is not subsampled, greyscale
    ones, and those large enough for the downscale to average the difference away. PIL decodes the
    rest, so their network input is exactly the PIL reference's pixels."""
    rng = np.random.default_rng(3)
    side = NVJPEG_MIN_SCALE * 256  # GoogLeNet's transform resizes the short side to 256
    files = {}
    for name, (w, h), kw in [("small_420", (300, 200), {}), ("small_444", (300, 200), {"subsampling": 0}),
                             ("grey", (300, 200), {}), ("just_short", (side + 200, side - 1), {}),
                             ("large_420", (side + 300, side), {})]:
        a = rng.integers(0, 256, (h // 20 + 1, w // 20 + 1, 3), dtype=np.uint8)
        im = Image.fromarray(a).resize((w, h), Image.NEAREST)  # sharp colour edges
        files[name] = tmp_path / f"{name}.jpg"
        (im.convert("L") if name == "grey" else im).save(files[name], quality=90, **kw)
    clf = cpu_as_gpu(optimize=False)
    decoded_by_nvjpeg: list[bytes] = []
    cpu_nvjpeg(clf, [])
    decode = clf.decoder.decode_jpegs_cuda
    clf.decoder.decode_jpegs_cuda = lambda datas, device: (decoded_by_nvjpeg.extend(datas), decode(datas, device))[1]
    results = clf.classify(list(files.values()))
    assert all(r.ok for r in results)
    want = {files[n].read_bytes() for n in ("small_444", "grey", "large_420")}
    assert set(decoded_by_nvjpeg) == want and len(decoded_by_nvjpeg) == 3
    decoded_by_nvjpeg.clear()
    tf = get_spec("googlenet").weights_enum().transforms()
    for name in ("small_420", "just_short"):  # the one-image path too, against the reference's pixels
        ref = tf(pil_to_tensor(Image.open(files[name]).convert("RGB")))
        torch.testing.assert_close(clf.device_input(files[name]), ref, rtol=0, atol=0)
    assert decoded_by_nvjpeg == []


# ---------------------------------------------------------------- 2: OOM copying the model to the GPU


def test_out_of_memory_copying_the_model_falls_back_to_cpu(fake_cuda, jpegs, monkeypatch):
    real_to = torch.nn.Module.to

    def to(self, *args, **kwargs):
        if args and str(args[0]).startswith("cuda"):
            raise torch.OutOfMemoryError(OOM)
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    clf = Classifier(loaded(), "cpu", optimize=False)
    clf.device = "cuda"
    assert clf.warm_up() is False
    assert clf.device == "cpu" and "out of memory" in clf.notices[-1] and "CPU" in clf.notices[-1]
    [r] = clf.classify(jpegs[:1], top=1000)
    assert r.ok and r.device == "cpu"
    want = pil_reference_probs(jpegs[:1])[0]
    assert np.allclose([p.prob for p in sorted(r.top, key=lambda p: p.index)], want.numpy(), atol=1e-6)


# ---------------------------------------------------------------- 3: a GPU the wheel cannot run


@pytest.fixture
def old_gpu(monkeypatch):
    """A Pascal card (sm_61) beside a wheel built for sm_75 and later."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 1))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "GeForce GTX 1080")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80", "sm_86", "sm_90", "compute_90"])
    monkeypatch.setattr(torch.version, "hip", None)
    return monkeypatch


def test_auto_skips_a_gpu_the_wheel_has_no_kernels_for(old_gpu):
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DeviceUnavailableError, match="sm_61"):
        resolve_device("cuda")
    clf = Classifier(loaded(), "auto")
    assert clf.device == "cpu" and "GTX 1080" in clf.notices[0] and "sm_61" in clf.notices[0]


@pytest.mark.parametrize("capability, archs, usable", [
    ((8, 6), ["sm_75", "sm_80", "sm_90"], True),   # same major, newer minor: sm_80 runs
    ((7, 0), ["sm_75", "sm_80"], False),           # sm_75 needs 7.5
    ((12, 0), ["sm_80", "sm_90", "compute_90"], True),  # PTX compiles for newer GPUs
    ((12, 0), ["sm_80", "sm_90"], False),
    ((9, 0), ["sm_80", "sm_90a"], True),
    ((8, 9), ["sm_75", "sm_90a"], False),          # sm_90a runs on 9.0 only
])
def test_compute_capability_against_the_arch_list(old_gpu, capability, archs, usable):
    old_gpu.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    old_gpu.setattr(torch.cuda, "get_arch_list", lambda: archs)
    assert resolve_device("auto") == ("cuda" if usable else "cpu")


def test_cuda_error_while_warming_up_moves_to_cpu(fake_cuda, jpegs):
    clf = gpu_classifier(optimize=False)
    clf.networks.modules["cuda"] = NoKernel()
    clf.decoder.decode_jpegs_cuda = lambda datas, device: None
    assert clf.warm_up() is False and not clf.graph_ready
    assert clf.device == "cpu" and "no kernel image" in clf.notices[-1]
    [r] = clf.classify(jpegs[:1], top=1000)
    assert r.ok and r.device == "cpu"
    assert np.allclose([p.prob for p in sorted(r.top, key=lambda p: p.index)],
                       pil_reference_probs(jpegs[:1])[0].numpy(), atol=1e-6)


def test_cuda_error_on_a_batch_moves_to_cpu(fake_cuda, jpegs):
    clf = Classifier(loaded(), "cpu", optimize=False)
    clf.device = "cuda"

    def no_kernel(*args, **kwargs):
        raise torch.AcceleratorError(NO_KERNEL)

    clf.batches.classify_batch_cuda = no_kernel
    results = clf.classify(jpegs[:2], top=1000)
    assert clf.device == "cpu" and all(r.ok and r.device == "cpu" for r in results)
    assert "no kernel image" in results[0].notice
    for r, w in zip(results, pil_reference_probs(jpegs[:2])):
        assert np.allclose([p.prob for p in sorted(r.top, key=lambda p: p.index)], w.numpy(), atol=1e-6)


# ---------------------------------------------------------------- 4, 5: where and when graphs are captured


def test_graph_is_captured_on_the_classifiers_own_device(fake_cuda):
    clf = gpu_classifier("cuda:1")
    clf.decoder.decode_jpegs_cuda = lambda datas, device: None
    assert clf.warm_up() and clf.graph_ready
    assert fake_cuda.capture_devices == [1]


def test_one_graph_capture_at_a_time_in_the_process(fake_cuda):
    """Two classifiers (a model switch) warming up on two threads: captures never overlap."""
    a, b = gpu_classifier(), gpu_classifier()
    for clf in (a, b):
        clf.decoder.decode_jpegs_cuda = lambda datas, device: None
    ready = []
    threads = [threading.Thread(target=lambda c=c: ready.append(c.warm_up())) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ready == [True, True] and len(fake_cuda.capture_devices) == 2
    assert fake_cuda.most_at_once == 1


# ---------------------------------------------------------------- 6: TF32


def test_cuda_classifier_turns_tf32_off(old_gpu, tf32_on):
    old_gpu.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    Classifier(loaded(), "cpu")
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    clf = Classifier(loaded(), "cuda")
    assert clf.device == "cuda"
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False


def test_every_cuda_device_choice_turns_tf32_off(old_gpu, tf32_on):
    """The command line's attribute and the benches pick their device with `resolve_device` and never
    make a CUDA Classifier: TF32 must go off there too (on a GPU it moved a Saliency map to ρ = 0.96)."""
    old_gpu.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert resolve_device("cpu") == "cpu"
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert resolve_device("auto") == "cuda"
    assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False


# ---------------------------------------------------------------- 9, 10: the batch path


def test_batch_is_not_synchronised_per_image_and_frees_each_decode(fake_cuda, jpegs):
    clf = cpu_as_gpu(optimize=False)
    calls: list[int] = []
    cpu_nvjpeg(clf, calls)
    decoded = []
    decode = clf.decoder.decode_jpegs_cuda

    def tracked(datas, device):
        out = decode(datas, device)
        decoded.extend(weakref.ref(x) for x in out)
        return out

    clf.decoder.decode_jpegs_cuda = tracked
    alive_at_forward = []
    forward = clf.batches.forward_and_fill

    def counting_forward(*args, **kwargs):
        alive_at_forward.append(sum(r() is not None for r in decoded))
        return forward(*args, **kwargs)

    clf.batches.forward_and_fill = counting_forward
    results = clf.classify(jpegs, batch_size=len(jpegs), top=1000)
    assert calls == [len(jpegs)]
    assert fake_cuda.syncs == 0  # the old path synchronised after the decode and after every image
    assert alive_at_forward == [0]  # no full-size decode outlives its resize
    assert all(set(r.timings_ms) == {"decode", "preprocess", "forward", "total"} for r in results)
    assert all(r.timings_ms["preprocess"] > 0 and r.timings_ms["decode"] > 0 for r in results)
    want = reference_probs(jpegs)
    for r, w in zip(results, want):
        assert r.ok and np.allclose([p.prob for p in sorted(r.top, key=lambda p: p.index)], w.numpy(), atol=1e-6)


def test_nvjpeg_out_of_memory_retries_in_smaller_groups(fake_cuda, jpegs):
    clf = cpu_as_gpu(optimize=False)
    calls: list[int] = []
    cpu_nvjpeg(clf, calls, fail_above=2)
    pil_calls = []
    load_cpu = clf.decoder.load_cpu
    clf.decoder.load_cpu = lambda *a, **k: pil_calls.append(a) or load_cpu(*a, **k)
    fake_cuda.free = 10_000  # bytes: the decode needs more
    results = clf.classify(jpegs, batch_size=len(jpegs), top=1000)
    assert all(r.ok for r in results) and not pil_calls  # nothing mistaken for a bad file
    assert calls == [6, 3, 1, 2, 3, 1, 2]  # halved until the groups fit, never one image at a time
    assert all("ran out of GPU memory" in r.notice for r in results)
    assert any("nvjpeg ran out of GPU memory" in n for n in clf.notices)
    want = reference_probs(jpegs)
    for r, w in zip(results, want):
        assert np.allclose([p.prob for p in sorted(r.top, key=lambda p: p.index)], w.numpy(), atol=1e-6)


def test_a_bad_jpeg_is_still_found_and_explained(fake_cuda, jpegs, tmp_path):
    bad = tmp_path / "bad.jpg"
    data = bytearray(jpegs[0].read_bytes())
    data[400:1200] = b"\x00" * 800  # corrupt scan data, intact header and end marker
    bad.write_bytes(bytes(data))
    clf = cpu_as_gpu(optimize=False)
    calls: list[int] = []

    def decode(datas, device):
        calls.append(len(datas))
        if any(d == bytes(data) for d in datas):
            raise RuntimeError("Error while decoding JPEG images: 7")
        return [pil_to_tensor(Image.open(io.BytesIO(d)).convert("RGB")) for d in datas]

    clf.decoder.decode_jpegs_cuda = decode
    results = clf.classify([*jpegs[:3], bad], batch_size=4)
    assert [r.ok for r in results[:3]] == [True] * 3 and results[3].source == str(bad)
    assert results[3].notice is None and not any("memory" in n for n in clf.notices)


# ---------------------------------------------------------------- 11: no deprecated torchvision call


def test_nvjpeg_is_called_without_the_deprecated_wrapper(monkeypatch):
    import torchvision.io

    def deprecated(*args, **kwargs):
        raise AssertionError("torchvision.io.decode_jpeg is deprecated in torchvision 0.29")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", deprecated)
    monkeypatch.setattr(torchvision.io.image, "decode_jpeg", deprecated)
    seen = []
    monkeypatch.setattr(torch.ops.image, "decode_jpegs_cuda",
                        lambda tensors, mode, device: seen.append((len(tensors), mode, device)) or [])
    clf = Classifier(loaded(), "cpu")
    clf.device = "cuda:0"
    clf.decoder.decode_jpegs_cuda([b"\xff\xd8\xff\xd9"], clf.device)
    from torchvision.io import ImageReadMode

    assert seen == [(1, ImageReadMode.RGB.value, torch.device("cuda:0"))]


# ---------------------------------------------------------------- 12: the GPU path reads on the decode pool


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, jpegs) -> list[Path]:
    """nvjpeg's JPEGs (4:4:4) and PIL's files (small 4:2:0 JPEGs, a PNG), interleaved."""
    folder = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(11)
    pil = []
    for i, (w, h) in enumerate([(90, 70), (70, 90), (110, 80)]):
        im = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        p = folder / (f"s{i}.jpg" if i < 2 else f"s{i}.png")
        im.save(p, **({"quality": 90} if i < 2 else {}))
        pil.append(p)
    return [jpegs[0], pil[0], jpegs[1], jpegs[2], pil[1], jpegs[3], pil[2], jpegs[4]]


def _probs(r) -> np.ndarray:
    return np.array([p.prob for p in sorted(r.top, key=lambda p: p.index)])


def test_gpu_batches_are_read_on_the_pool_a_batch_ahead_of_the_forward(fake_cuda, mixed):
    """Each batch's files are read (headers for nvjpeg, PIL for the rest) on the decode threads while
    the previous batch's forward runs: the forward of batch k waits until batch k + 1's reads have
    begun, which they do only if they were queued ahead. nvjpeg gets each batch's JPEGs in one call."""
    clf = cpu_as_gpu(optimize=False)
    clf.decode_workers = 3
    calls: list[int] = []
    cpu_nvjpeg(clf, calls)
    started: dict[str, threading.Event] = {str(p): threading.Event() for p in mixed}
    threads: set[str] = set()
    read = clf.batches.read_one_for_device

    def reading(src, label):
        threads.add(threading.current_thread().name)
        started[label].set()
        return read(src, label)

    clf.batches.read_one_for_device = reading
    forward = clf.batches.forward_and_fill
    next_batch_began = []

    def waiting_forward(tensors, slots, *args, **kwargs):
        first = mixed.index(Path(slots[0].source))
        upcoming = [str(p) for p in mixed[first + 3 : first + 6]]
        next_batch_began.append(all(started[q].wait(10) for q in upcoming))
        return forward(tensors, slots, *args, **kwargs)

    clf.batches.forward_and_fill = waiting_forward
    results = clf.classify(mixed, batch_size=3, top=1000)
    assert next_batch_began == [True, True, True]  # the last batch has none after it
    assert threads and all(t.startswith("decode") for t in threads)
    assert calls == [2, 2, 1]  # the JPEGs of each batch of 3 in one nvjpeg call
    assert [r.source for r in results] == [str(p) for p in mixed] and all(r.ok for r in results)
    for r, w in zip(results, reference_probs(mixed)):  # the GPU path's input: the transform on uint8
        assert np.allclose(_probs(r), w.numpy(), atol=1e-6)


def test_gpu_pool_keeps_input_order_and_a_bad_file_in_the_middle(fake_cuda, mixed, tmp_path):
    """Reads that finish in the reverse order still give the results in input order; a file that
    cannot be read, in the middle of a batch, has its error and the rest their own answers."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture at all\n" * 10)
    files = [*mixed[:3], bad, *mixed[3:6]]
    clf = cpu_as_gpu(optimize=False)
    clf.decode_workers = 4
    cpu_nvjpeg(clf, [])
    read = clf.batches.read_one_for_device
    finished: list[str] = []

    def slow_first(src, label):
        time.sleep(0.05 * (len(files) - files.index(Path(label))) % 0.35)
        out = read(src, label)
        finished.append(label)
        return out

    clf.batches.read_one_for_device = slow_first
    results = clf.classify(files, batch_size=4, top=1000)
    assert finished != [str(f) for f in files]  # the pool did finish them out of order
    assert [r.source for r in results] == [str(f) for f in files]
    assert [r.ok for r in results] == [True, True, True, False, True, True, True]
    assert "not an image" in results[3].error and results[3].timings_ms["decode"] >= 0
    good = [f for f in files if f != bad]
    for r, w in zip([r for r in results if r.ok], reference_probs(good)):
        assert np.allclose(_probs(r), w.numpy(), atol=1e-6)


def test_cancelling_a_gpu_run_stops_the_pool(fake_cuda, mixed):
    """Cancelled after the first batch: Cancelled is raised, no decode thread is left, and nothing
    beyond the batch queued ahead was read."""
    from explorer.core.cancel import Cancelled, CancelToken

    clf = cpu_as_gpu(optimize=False)
    clf.decode_workers = 2
    cpu_nvjpeg(clf, [])
    read = clf.batches.read_one_for_device
    reads: list[str] = []
    clf.batches.read_one_for_device = lambda src, label: reads.append(label) or read(src, label)
    token = CancelToken()
    got = []
    with pytest.raises(Cancelled):
        for batch in clf.iter_classify(mixed, batch_size=2, cancel=token):
            got.extend(batch)
            token.cancel()
    assert len(got) == 2 and all(r.ok for r in got)
    assert len(reads) <= 4  # this batch and the next, at most
    assert not [t for t in threading.enumerate() if t.name.startswith("decode")]


def test_the_gpu_decode_pool_is_sized_to_the_cores(monkeypatch):
    """A GPU batch reads on one thread per core (the forward runs on the GPU); a CPU batch keeps cores
    for its forward."""
    import explorer.core.classify.batching as batching

    monkeypatch.setattr(batching.os, "cpu_count", lambda: 16)
    clf = Classifier(loaded(), "cpu")
    assert clf.batches.decode_worker_count(on_cuda=True) == 16
    assert clf.batches.decode_worker_count(on_cuda=False) == batching.MAX_DECODE_WORKERS == 8
    clf.decode_workers = 3
    assert clf.batches.decode_worker_count(on_cuda=True) == 3


def test_a_gpu_fallback_mid_run_reads_the_next_batches_again_for_the_cpu(fake_cuda, mixed):
    """The batch queued ahead was read for the GPU; once the classifier has moved to the CPU it is
    read again the CPU's way (PIL decode and resize), and every answer is the CPU reference's."""
    clf = cpu_as_gpu(optimize=False)
    cpu_nvjpeg(clf, [])
    cuda_batch = clf.batches.classify_batch_cuda

    def fails_once(*args, **kwargs):
        clf.batches.classify_batch_cuda = cuda_batch
        raise torch.AcceleratorError(NO_KERNEL)

    clf.batches.classify_batch_cuda = fails_once

    def to_cpu(reason):
        clf.networks.__class__ = DeviceNetworks
        clf.networks.device = "cpu"
        clf.networks.notices.append(f"{reason}; classifying on the CPU from now on")

    clf.networks.fall_back_to_cpu = to_cpu
    results = clf.classify(mixed, batch_size=3, top=1000)
    assert all(r.ok and r.device == "cpu" for r in results) and [r.source for r in results] == [str(p) for p in mixed]
    assert all(GPU_INPUT_NOTICE_ABSENT(r) for r in results)
    for r, w in zip(results, pil_reference_probs(mixed)):
        assert np.allclose(_probs(r), w.numpy(), atol=1e-6)


def GPU_INPUT_NOTICE_ABSENT(r) -> bool:  # noqa: N802
    from explorer.core.classify.inference import GPU_INPUT_NOTICE

    return r.notice is None or GPU_INPUT_NOTICE not in r.notice


# ---------------------------------------------------------------- 13: batch-1 in one graph replay


class _ReplayOnCpu:
    """Stands in for a captured graph on the CPU: replay runs what was captured (the forward, the
    softmax, the top-k) from the static input into the static outputs, as a CUDA graph does."""

    def __init__(self, networks, module):
        self.networks, self.module, self.replays = networks, module, 0

    def replay(self):
        from explorer.core.classify.device import _ranked

        g = self.networks.cuda_graph
        self.replays += 1
        with torch.inference_mode():
            logits = self.module(g.static_in)
            probs, top = _ranked(logits)
            g.logits.copy_(logits)
            g.probs.copy_(probs)
            g.top.copy_(top)


def test_batch_one_is_one_replay_with_softmax_and_top_k(fake_cuda, jpegs):
    """After warm-up, one image on the GPU is one graph replay that ranks the classes itself; the
    answer is the eager batch's (the plain model, softmax, top-k) for top 5 and for every class."""
    clf = cpu_as_gpu(optimize=False)
    cpu_nvjpeg(clf, [])
    assert clf.warm_up() and clf.graph_ready
    g = clf.networks.cuda_graph
    assert g.top is not None and tuple(g.top.shape) == (2, 5) and g.top.dtype == torch.float64
    replayer = g.graph = _ReplayOnCpu(clf.networks, clf.networks.module("cpu"))
    forwards = []
    clf.networks.module("cpu").register_forward_pre_hook(lambda m, a: forwards.append(a[0].shape[0]))
    for p, want in zip(jpegs[:2], reference_probs(jpegs[:2])):
        forwards.clear()
        [five] = clf.classify([p], top=5)
        [every] = clf.classify([p], top=1000)
        assert forwards == [1, 1]  # both in the replay, none eager
        top5 = want.topk(5)
        assert [q.index for q in five.top] == top5.indices.tolist()
        assert np.allclose([q.prob for q in five.top], top5.values.numpy(), atol=1e-6)
        assert np.allclose(_probs(every), want.numpy(), atol=1e-6)
    assert replayer.replays == 4


# ---------------------------------------------------------------- on a GPU


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_graph_replay_gives_each_image_its_own_logits(jpegs):
    """Two different images through the captured batch-1 graph: each gets the eager forward's
    answer (a graph that captured nothing would return the warm-up input's)."""
    clf = Classifier(calibrated(), "cuda", optimize=False)
    assert clf.warm_up() and clf.graph_ready
    a, b = (clf.classify([p], top=1000)[0] for p in jpegs[:2])
    want = clf.logits(jpegs[:2]).softmax(1)  # eager, batch 2, same pixels
    assert (want[0] - want[1]).abs().max().item() > 1e-2  # the two images are told apart
    for r, w in zip((a, b), want):
        got = np.array([p.prob for p in sorted(r.top, key=lambda p: p.index)])
        assert np.abs(got - w.numpy()).max() <= 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_gpu_graph_on_the_second_device(jpegs):
    clf = Classifier(loaded(), "cuda:1", optimize=False)
    assert clf.warm_up() and clf.graph_ready
    results = [clf.classify([p], top=1000)[0] for p in jpegs[:2]]
    want = reference_probs(jpegs[:2])
    for r, w in zip(results, want):
        assert r.device == "cuda:1"
        assert np.allclose([p.prob for p in sorted(r.top, key=lambda p: p.index)], w.numpy(), atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_numbers_are_full_float32(tf32_on):
    """With torch's defaults (TF32 convolutions), a CUDA classifier's network still gives the CPU's
    logits for the same input to float32 rounding: building it turns TF32 off."""
    clf = Classifier(loaded(), "cuda", optimize=False)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gpu = clf.module(x.cuda()).float().cpu()
        cpu = loaded().module(x)
    scale = cpu.abs().max().item()
    # TF32 (10-bit mantissa) is off by ~1e-3 of the scale, float32 by ~1e-6.
    assert (gpu - cpu).abs().max().item() <= 5e-5 * scale


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_input_is_within_a_grey_level_of_the_pil_reference(tmp_path):
    """The GPU path's network input (nvjpeg for the JPEGs it suits, PIL's decode for the rest, then
    `weights.transforms()` on the uint8 tensor) against torchvision's reference (PIL decode, the same
    transform on the PIL image, on the CPU): what GPU_INPUT_NOTICE says, within a grey level on
    average and 5 at most, for photos and the worst contents (pure noise, whose every pixel has its
    own chroma; saturated colour blocks) on both sides of NVJPEG_MIN_SCALE. Below it PIL decodes:
    the tensor resize's rounding only. Not probabilities within 1e-3: the calibrated weights of the
    tests move by more than that for a tenth of a grey level, and the published weights cannot be
    had here."""
    rng = np.random.default_rng(9)
    tf = get_spec("googlenet").weights_enum().transforms()
    clf = Classifier(calibrated(), "cuda")
    big = (NVJPEG_MIN_SCALE * 256 * 4 // 3 + 40, NVJPEG_MIN_SCALE * 256 + 30)  # decoded by nvjpeg
    cases = [(w, h, "photo") for w, h in [big, (1600, 1200), (640, 480), (300, 400), (120, 90)]]
    cases += [(*big, "noise"), (1600, 1200, "noise"), (*big, "blocks"), (1400, 1100, "blocks")]
    for i, (w, h, kind) in enumerate(cases):
        if kind == "noise":
            im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        else:
            n = 12 if kind == "photo" else w // 25
            low = rng.integers(0, 256, (n * h // w + 1, n, 3), dtype=np.uint8)
            im = Image.fromarray(low).resize((w, h), Image.BICUBIC if kind == "photo" else Image.NEAREST)
        p = tmp_path / f"{kind}{i}.jpg"
        im.save(p, quality=90)
        ref = tf(Image.open(p).convert("RGB"))
        levels = (clf.device_input(p).float().cpu() - ref).abs() * 0.226 * 255
        bound = 6 if (w, h) == big else 1.5  # levels come in steps of ~1.0: 5 is 5.02
        assert levels.mean() < 0.5 and levels.max() < bound, (p.name, levels.mean(), levels.max())


def test_results_classified_on_a_gpu_say_their_input_bound(fake_cuda, jpegs):
    """Point 7: the GPU's decode and resize are not the PIL reference's to 1e-3, so every result made on the
    GPU says so, as a fast decode does; the same images on the CPU say nothing."""
    from explorer.core.classify.inference import GPU_INPUT_NOTICE

    clf = Classifier(loaded(), "cpu", optimize=False)
    on_cpu = clf.classify(jpegs[:2], top=5)
    assert all(r.ok and r.notice is None for r in on_cpu)
    clf.device = "cuda"
    clf.batches.classify_batch_cuda = lambda chunk, top, cancel, prepared=None: clf.batches.classify_batch_cpu(
        chunk, top, cancel)
    results = clf.classify(jpegs[:2], top=5)
    assert all(r.ok and GPU_INPUT_NOTICE in r.notice for r in results)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_batch_one_replay_ranks_as_eager_does(jpegs):
    """One image after warm-up: no eager forward runs (a forward hook never fires during a replay),
    and the replay's top-5 and every class's probability are the eager network's (same device copy,
    same input, softmax and top-k after it) to float32 rounding."""
    clf = Classifier(calibrated(), "cuda")
    assert clf.warm_up() and clf.graph_ready and clf.networks.cuda_graph.top is not None
    module = clf.module
    eager_forwards = []
    handle = module.register_forward_pre_hook(lambda m, a: eager_forwards.append(a[0].shape[0]))
    try:
        for p in jpegs[:3]:
            x = clf.device_input(p)
            with torch.inference_mode():
                x4 = x[None].contiguous(memory_format=torch.channels_last)
                want = module(x4).float().softmax(1)[0].cpu()
            eager_forwards.clear()
            values, indices = clf.networks.top_of_one(x, 5)
            [every] = clf.classify([p], top=1000)
            assert eager_forwards == []  # both were graph replays
            top5 = want.topk(5)
            assert indices == top5.indices.tolist()
            assert np.allclose(values, top5.values.numpy(), rtol=1e-5, atol=1e-7)
            assert np.allclose(_probs(every), want.numpy(), rtol=1e-5, atol=1e-7)
    finally:
        handle.remove()


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_gpu_pool_batches_give_each_image_its_own_answer(mixed, tmp_path):
    """The real path: nvjpeg's batched decode and PIL on the pool, a bad file in the middle, batches of
    3 read a batch ahead: each image's probabilities are those of its own input through the eager
    network, in input order."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture at all\n" * 10)
    files = [*mixed[:4], bad, *mixed[4:]]
    clf = Classifier(calibrated(), "cuda")
    clf.decode_workers = 4
    results = clf.classify(files, batch_size=3, top=1000)
    assert [r.source for r in results] == [str(f) for f in files]
    assert [r.ok for r in results] == [f != bad for f in files] and all(r.device == "cuda" for r in results)
    good = [f for f in files if f != bad]
    want = clf.logits(good).softmax(1)
    for r, w in zip([r for r in results if r.ok], want):
        assert np.abs(_probs(r) - w.numpy()).max() <= 1e-4
