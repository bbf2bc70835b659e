"""Hostile input: image files, paths, weight files and sizes that once killed the process, hung a batch
or half-loaded a model. Each is refused with one line naming the file and the reason, before any work,
and the good inputs beside it are still classified.

The cases that hang or exhaust memory when the guard is missing (a FIFO, /dev/zero, a 1×100,000 strip)
run in a subprocess with a timeout and an address-space cap, or with a watchdog that unblocks a FIFO,
so that a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import copy
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image, ImageFile
from torchvision import transforms as T

from explorer.cli import main
from explorer.core.classify.images import (
    MAX_ASPECT_RATIO,
    ImageLoadError,
    check_resize,
    expand_inputs,
    load_image,
    read_bytes,
)
from explorer.core.classify.inference import ClassificationResult, Classifier
from explorer.core.model.loading import LoadedModel
from explorer.core.shapes.trace import MAX_BATCH, MAX_INPUT_SIDE
from explorer.core.model.weights import WeightsError, WeightsState, load_weights_file
from explorer.core.model.zoo import get_spec, imagenet_preprocessing
from tests.netutil import FifoWatchdog, png_header_only, strip_png, write_weights

#: What one input may cost the CLI process at most (torch alone is ~0.9 GB resident).
PEAK_RSS_LIMIT = 1.5 * 2**30


def good_png(path: Path, seed: int) -> Path:
    gen = torch.Generator().manual_seed(seed)
    low = (torch.rand(3, 6, 8, generator=gen) * 255).byte().permute(1, 2, 0).numpy()
    Image.fromarray(low).resize((96, 72), Image.BICUBIC).save(path)
    return path


# ---------------------------------------------------------------- images and paths


@pytest.mark.parametrize("w,h,short_side", [(1, 100_000, 256), (10, 100_000, 342), (100_000, 1, 256)])
def test_absurd_aspect_ratio_is_refused_from_the_header(tmp_path, monkeypatch, w, h, short_side):
    # Old behaviour: the 278-byte strip passed the pixel limit and Resize(256) made it 256×25,600,000
    # (6 GB); here any attempt to decode it fails the test.
    p = tmp_path / "strip.png"
    p.write_bytes(strip_png(w, h))
    assert p.stat().st_size < 400

    def no_decode(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(ImageLoadError) as info:
        load_image(p, draft_short_side=short_side)
    ratio = max(w, h) // min(w, h)
    assert info.value.source == str(p)
    assert f"aspect ratio of {ratio:,}:1, above the limit of {MAX_ASPECT_RATIO}:1" in info.value.reason
    assert "\n" not in str(info.value)


def test_aspect_ratio_limit_and_resized_size():
    check_resize((1, MAX_ASPECT_RATIO), 342)  # at the limit: accepted
    with pytest.raises(ImageLoadError, match="above the limit"):
        check_resize((MAX_ASPECT_RATIO + 1, 1), 342)
    # 100×5000 is 0.5 megapixels, but Resize(256) makes it 256×12,800 (hand computation) = 3.3 MP.
    with pytest.raises(ImageLoadError, match=r"resized to 256×12800 = 3 megapixels exceeds the limit of 1 mega"):
        load_image(png_header_only(100, 5000), max_pixels=1_000_000, draft_short_side=256)
    check_resize((100, 5000), 256, max_pixels=256 * 12800)


def test_fifo_is_refused_without_blocking(tmp_path):
    # Old behaviour: opening the FIFO for reading blocked until a writer came (forever).
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with FifoWatchdog(fifo) as dog:
        t0 = time.monotonic()
        with pytest.raises(ImageLoadError, match=r"is a FIFO \(named pipe\), not a regular file"):
            load_image(fifo)
        elapsed = time.monotonic() - t0
    assert not dog.fired and elapsed < 2


def test_devices_are_refused_and_reads_are_bounded(tmp_path):
    # /dev/zero is refused from its stat (nothing opened); in-process only because read_bytes is also
    # bounded below — the unbounded case runs in the subprocess test.
    with pytest.raises(ImageLoadError, match="is a character device, not a regular file"):
        read_bytes("/dev/zero", max_bytes=1 << 20)
    p = tmp_path / "big.png"
    p.write_bytes(b"\x89PNG" + bytes(4096))
    with pytest.raises(ImageLoadError, match="file of 4100 bytes exceeds the limit of 1024 bytes"):
        read_bytes(p, max_bytes=1024)
    assert len(read_bytes(p, max_bytes=4100)) == 4100


def test_folder_lists_a_fifo_so_that_it_is_reported(tmp_path):
    # Old behaviour: the FIFO was dropped silently from the folder's listing.
    good_png(tmp_path / "a.png", 0)
    os.mkfifo(tmp_path / "b.jpg")
    (tmp_path / "c.jpg").mkdir()  # a folder named like an image is still not listed
    assert expand_inputs([tmp_path]) == [tmp_path / "a.png", tmp_path / "b.jpg"]


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(3, 8, 5, stride=2)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(torch.relu(self.bn(self.conv(x))), 4)
        return self.fc(torch.flatten(x, 1))


def test_iter_classify_finishes_the_good_images_beside_hostile_ones(tmp_path):
    net = TinyNet().eval()
    pre = imagenet_preprocessing(32)  # Resize(37), CenterCrop(32)
    loaded = LoadedModel(get_spec("googlenet"), net, WeightsState("random", "none"), [f"c{i}" for i in range(10)],
                         preprocess=pre.transform())
    good = [good_png(tmp_path / "a.png", 1), good_png(tmp_path / "b.png", 2)]
    strip = tmp_path / "strip.png"
    strip.write_bytes(strip_png(1, 4000))  # 37×148,000 once resized: absurd, yet harmless if a regression lets it by
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    clf = Classifier(loaded, "cpu", batch_size=8)
    with FifoWatchdog(fifo):
        batches = list(clf.iter_classify([good[0], strip, fifo, good[1]], top=3))
    results = [r for b in batches for r in b]
    assert [r.source for r in results] == [str(good[0]), str(strip), str(fifo), str(good[1])]
    assert "aspect ratio of 4,000:1" in results[1].error and "FIFO" in results[2].error
    # The good ones, against torchvision's transforms and the plain network.
    tf = T.Compose([T.Resize(pre.resize), T.CenterCrop(pre.crop), T.ToTensor(), T.Normalize(pre.mean, pre.std)])
    with torch.no_grad():
        ref = copy.deepcopy(net)(torch.stack([tf(Image.open(p).convert("RGB")) for p in good]))
    for r, row in zip([results[0], results[3]], ref):
        assert r.ok and [p.index for p in r.top] == row.topk(3).indices.tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_refuses_a_jpeg_strip_before_nvjpeg(tmp_path):
    net = TinyNet().eval()
    loaded = LoadedModel(get_spec("googlenet"), net, WeightsState("random", "none"), [f"c{i}" for i in range(10)],
                         preprocess=imagenet_preprocessing(32).transform())
    good = tmp_path / "good.jpg"
    Image.new("RGB", (96, 72), (10, 200, 90)).save(good)
    strip = tmp_path / "strip.jpg"
    Image.new("L", (2, 60_000)).save(strip)  # JPEG allows 65,535 pixels per side
    clf = Classifier(loaded, "cuda")
    results = clf.classify([strip, good], top=3)
    assert "aspect ratio of 30,000:1" in results[0].error and results[1].ok
    with pytest.raises(ImageLoadError, match="aspect ratio"):  # the single-image device path
        clf.device_input(strip)


def test_json_of_a_nan_result_is_valid():
    # Old behaviour: NaN probabilities went into the CLI's JSON as the bare word NaN (invalid JSON).
    r = ClassificationResult(source="x.png")
    r.fill([math.nan, 0.5], [3, 4], ["a", "b", "c", "d", "e"])
    doc = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert [t["prob"] for t in doc["top"]] == [None, 0.5]


# ---------------------------------------------------------------- the CLI over a hostile batch


def _limit_address_space():
    # A regression (a 6 GB resize, /dev/zero read to the end) fails fast instead of exhausting the machine.
    cap = 12 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


#: Runs the CLI under the address-space cap and writes its peak resident size (VmHWM of its own memory
#: map, in kB) to the file named by HWM_FILE when it exits. Not getrusage's ru_maxrss: a child forked
#: (or vforked) from this test process inherits the parent's peak through exec, and in the full suite a
#: pytest process of over 1.5 GB made the CLI look that big.
_CAPPED = (
    "import atexit, os, re, resource, runpy, sys\n"
    "cap = 12 * 2**30; resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
    "def hwm():\n"
    "    status = open('/proc/self/status').read()\n"
    "    open(os.environ['HWM_FILE'], 'w').write(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
    "atexit.register(hwm)\n"
    "sys.argv = ['inception-explorer', *sys.argv[1:]]\n"
    "runpy.run_module('explorer', run_name='__main__')\n"
)


def _run_cli_measured(args, timeout=240):
    """(returncode, stdout, stderr, peak RSS in bytes) of `inception-explorer classify ARGS`."""
    hwm_file = tempfile.mktemp(suffix=".hwm")
    proc = subprocess.Popen([sys.executable, "-c", _CAPPED, "classify", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, HWM_FILE=hwm_file))
    out: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k, f: out.__setitem__(k, f.read()), args=(k, f))
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join()
    proc.stdout.close()
    proc.stderr.close()
    timed_out = time.monotonic() > deadline
    assert not timed_out, "the batch hung"
    peak = int(open(hwm_file).read()) * 1024
    os.unlink(hwm_file)
    return proc.returncode, out["out"].decode(), out["err"].decode(), peak


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory):
    """One CLI run over a folder (a good image, the two strips, a FIFO), /dev/zero and a second good image."""
    folder = tmp_path_factory.mktemp("hostile")
    good = [good_png(folder / "a_good.png", 3)]
    (folder / "b_strip_1x100000.png").write_bytes(strip_png(1, 100_000))
    (folder / "c_strip_10x100000.png").write_bytes(strip_png(10, 100_000))
    os.mkfifo(folder / "d_pipe.jpg")
    other = tmp_path_factory.mktemp("other")
    good.append(good_png(other / "e_good.png", 4))
    code, out, err, peak = _run_cli_measured([folder, "/dev/zero", good[1], "--model", "googlenet",
                                              "--weights", "none", "--device", "cpu", "--format", "jsonl"])
    return {"folder": folder, "good": good, "code": code, "out": out, "err": err, "peak": peak}


def test_cli_batch_classifies_the_good_images_beside_hostile_ones(hostile_batch):
    b = hostile_batch
    assert b["code"] == 0, b["err"]
    assert "Traceback" not in b["err"]

    def no_constants(name):
        raise ValueError(f"{name} in JSON")

    docs = [json.loads(line, parse_constant=no_constants) for line in b["out"].splitlines()]
    assert [d["path"] for d in docs] == [str(p) for p in b["good"]]
    assert all(len(d["top"]) == 5 for d in docs)
    lines = b["err"].strip().splitlines()
    assert lines[0].startswith("inception-explorer: warning: random weights")
    folder = b["folder"]
    expected = [
        (folder / "b_strip_1x100000.png", "aspect ratio of 100,000:1, above the limit of 100:1"),
        (folder / "c_strip_10x100000.png", "aspect ratio of 10,000:1, above the limit of 100:1"),
        (folder / "d_pipe.jpg", "is a FIFO (named pipe), not a regular file"),
        ("/dev/zero", "is a character device, not a regular file"),
    ]
    assert len(lines) == 1 + len(expected), lines
    for line, (path, reason) in zip(lines[1:], expected):
        assert line.startswith(f"inception-explorer: cannot classify {path}: ") and reason in line, line


def test_cli_batch_peak_memory(hostile_batch):
    # Old behaviour: the 1×100,000 strip alone grew the process past 6 GB.
    assert hostile_batch["peak"] < PEAK_RSS_LIMIT, f"peak RSS {hostile_batch['peak'] / 2**30:.2f} GB"


def test_cli_streams_json_lines_and_a_kill_keeps_them(tmp_path):
    # Old behaviour: one JSON array written at the end; a kill mid-batch left nothing.
    paths = [good_png(tmp_path / f"{i:02d}.png", i) for i in range(40)]
    proc = subprocess.Popen([sys.executable, "-m", "explorer", "classify", *map(str, paths), "--model", "googlenet",
                             "--weights", "none", "--device", "cpu", "--format", "jsonl", "--batch", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=_limit_address_space)
    try:
        timer = threading.Timer(240, proc.kill)
        timer.start()
        first = proc.stdout.readline()
        running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
    finally:
        timer.cancel()
        proc.kill()
        proc.wait()
    assert running, "the first result came only when the batch was over"
    docs = [json.loads(line) for line in (first + rest).splitlines()]
    assert 1 <= len(docs) < len(paths)
    assert [d["path"] for d in docs] == [str(p) for p in paths[: len(docs)]]


# ---------------------------------------------------------------- weight files


def _write_state(path: Path, state: dict) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation note on quantised tensors
        torch.save(state, path)
    return path


def _perturbed() -> nn.Module:
    """A TinyNet whose tensors all differ from TinyNet()'s: any partial load would show."""
    net = TinyNet()
    with torch.no_grad():
        for t in net.state_dict().values():
            t.add_(1)
    return net


def _last_tensor(kind: str, t: torch.Tensor) -> torch.Tensor:
    if kind == "sparse":
        return t.to_sparse()
    if kind == "qint8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.quantize_per_tensor(t, 0.1, 0, torch.qint8)
    return torch.empty_like(t, device="meta")


@pytest.mark.parametrize("kind,words", [("sparse", "sparse layout (sparse_coo)"), ("qint8", "quantised dtype (qint8)"),
                                        ("meta", "meta device")])
def test_a_bad_last_tensor_loads_nothing(tmp_path, kind, words):
    # Old behaviour: every tensor before the last was copied into the model, then torch raised a
    # multi-line error.
    state = TinyNet().state_dict()
    last = list(state)[-1]
    state[last] = _last_tensor(kind, state[last])
    path = _write_state(tmp_path / f"{kind}.pth", state)
    model = _perturbed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        load_weights_file(model, path)
    msg = str(info.value)
    assert msg.startswith(f"{kind}.pth: weights cannot be used; nothing was loaded — ") and "\n" not in msg
    assert f"{words}" in msg and msg.endswith(f"in 1 tensor: {last}")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_a_failure_the_checks_miss_still_loads_nothing(monkeypatch):
    # The safety net behind the checks: should torch fail half-way, the previous tensors come back.
    import explorer.core.model.weights as weights

    monkeypatch.setattr(weights, "check_tensors", lambda model, state: (state, None))
    state = TinyNet().state_dict()
    state["fc.bias"] = torch.empty_like(state["fc.bias"], device="meta")
    model = _perturbed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match="nothing was loaded — Error.*Cannot copy out of meta tensor") as info:
        weights.apply_state_dict(model, state)
    assert "\n" not in str(info.value)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


@pytest.mark.parametrize("dtype,words", [(torch.int32, "integer dtype int32"),
                                         (torch.complex64, "complex dtype complex64"),
                                         (torch.bool, "boolean dtype bool")])
def test_non_floating_weights_are_refused_with_the_keys(tmp_path, dtype, words):
    # Old behaviour: int32 and complex64 weights were accepted silently.
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in TinyNet().state_dict().items()}
    path = _write_state(tmp_path / "w.pth", state)
    model = _perturbed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        load_weights_file(model, path)
    msg = str(info.value)
    floating = [k for k, v in before.items() if v.is_floating_point()]  # all but bn.num_batches_tracked
    assert f"{words} (the model has float32) in {len(floating)} tensors: " in msg
    assert f"{', '.join(floating[:3])} … and {len(floating) - 3} more" in msg and "\n" not in msg
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_non_finite_weights_are_refused(tmp_path):
    # Old behaviour: all-NaN weights loaded, and the CLI printed NaN inside its JSON.
    state = TinyNet().state_dict()
    state["fc.bias"] = torch.full_like(state["fc.bias"], math.nan)
    state["conv.weight"][0, 0, 0, 0] = math.inf
    path = _write_state(tmp_path / "nan.pth", state)
    model = _perturbed()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    refused = r"NaN or infinite values \(refused: .*\) in 2 tensors: conv.weight, fc.bias$"
    with pytest.raises(WeightsError, match=refused):
        load_weights_file(model, path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_other_floating_precisions_are_cast_with_a_note(tmp_path):
    # Old behaviour: float16 weights were accepted without a word.
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in TinyNet().state_dict().items()}
    model = _perturbed()
    got = load_weights_file(model, _write_state(tmp_path / "half.pth", state))
    n = sum(v.is_floating_point() for v in state.values())
    assert got.note == f"{n} float16 tensors cast to float32" and got.note in got.describe()
    for k, v in model.state_dict().items():
        assert v.dtype == (torch.float32 if state[k].is_floating_point() else state[k].dtype)
        assert torch.equal(v, state[k].to(v.dtype))


def test_cli_weights_error_is_one_line(tmp_path, capsys):
    # Old behaviour: torch's RuntimeError escaped the CLI as a traceback.
    state = get_spec("googlenet").build().state_dict()
    state["fc.bias"] = torch.empty_like(state["fc.bias"], device="meta")
    path = write_weights(state, tmp_path / "meta.pth")
    good = good_png(tmp_path / "a.png", 0)
    code = main(["classify", str(good), "--model", "googlenet", "--weights", str(path), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err == ("inception-explorer: error: meta.pth: weights cannot be used; nothing was loaded — "
                            "meta device (no values) in 1 tensor: fc.bias\n")


@pytest.mark.parametrize("path", ["/dev/zero", "fifo"])
def test_weights_from_a_device_or_fifo_are_refused(tmp_path, path):
    if path == "fifo":
        path = tmp_path / "w.pth"
        os.mkfifo(path)
    with pytest.raises(WeightsError, match="is not a regular file"):
        load_weights_file(TinyNet(), path)


# ---------------------------------------------------------------- sizes


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if a model's graph is built or a model loaded: sizes are checked before either."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the size was checked")

    import explorer.core.graph.blockgraph
    import explorer.core.model.loading

    monkeypatch.setattr(explorer.core.graph.blockgraph, "build_block_graph", refuse)
    monkeypatch.setattr(explorer.core.model.loading, "load_model", refuse)


@pytest.mark.parametrize("args,message", [
    (["trace", "googlenet", "--size", "1000000000"], f"exceeds the limit of {MAX_INPUT_SIDE} pixels per side"),
    (["trace", "googlenet", "--size", "99999999999999999999"], f"limit of {MAX_INPUT_SIDE} pixels"),
    (["trace", "googlenet", "--size", f"224x{MAX_INPUT_SIDE + 1}"], f"limit of {MAX_INPUT_SIDE} pixels"),
    (["trace", "googlenet", "--size", "9" * 5000], f"limit of {MAX_INPUT_SIDE} pixels"),
    (["trace", "googlenet", "--batch", str(MAX_BATCH + 1)], f"exceeds the limit of {MAX_BATCH}"),
    (["classify", "x.png", "--model", "googlenet", "--batch", str(MAX_BATCH + 1)], f"from 1 to {MAX_BATCH}"),
    (["classify", "x.png", "--model", "googlenet", "--max-megapixels", "inf"], "at most 1000"),
    (["classify", "x.png", "--model", "googlenet", "--max-megapixels", "nan"], "at most 1000"),
])
def test_sizes_have_an_upper_bound_checked_before_any_work(no_work, capsys, args, message):
    # Old behaviour: tracebacks after allocating a gigabyte (trace), or the batch accepted (classify).
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith("inception-explorer: error: ") and message in captured.err
    assert len(captured.err.splitlines()) == 1 and len(captured.err) < 200


def test_the_largest_size_still_traces(capsys):
    assert main(["trace", "googlenet", "--size", f"{MAX_INPUT_SIDE}", "--batch", f"{MAX_BATCH}",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == [MAX_BATCH, 3, MAX_INPUT_SIDE, MAX_INPUT_SIDE]
