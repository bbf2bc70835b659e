"""Dataset examples: the index keeps each channel's true top images and the receptive field of the true
maximum (checked with forward hooks on the plain model and by perturbing the input), skips known files
without reading them, and records unreadable files without stopping."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from explorer.core.microscope import examples as ex
from explorer.core.graph.capture import CaptureModel
from explorer.core.microscope.examples import ExampleIndex, index_folder, target_geometry
from explorer.core.model.graphs import zoo_block_graph
from explorer.core.classify.images import ImageLoadError
from tests.netutil import calibrated_model, synthetic_batch

SIZE = 96
NODE, BRANCH = "inception3a", 1  # torchvision's inception3a.branch2 (1×1 then 3×3)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_TF = T.Compose([T.Resize((SIZE, SIZE)), T.ToTensor(), T.Normalize(MEAN, STD)])


def _preprocess(path):
    try:
        with Image.open(path) as im:
            return _TF(im.convert("RGB"))
    except OSError as e:
        raise ImageLoadError(str(path), f"cannot decode: {e}") from None


@pytest.fixture(scope="module")
def model():
    return calibrated_model("googlenet")


@pytest.fixture(scope="module")
def cm(model):
    return CaptureModel(model, zoo_block_graph("googlenet"))


def _folder(tmp_path, n=10):
    folder = tmp_path / "photos"
    folder.mkdir()
    imgs = synthetic_batch(n, SIZE, torch.Generator().manual_seed(7))
    for i, img in enumerate(imgs):
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"im{i:02d}.png")
    return folder


def _brute_force(model, folder):
    """Per image: the branch's activation from a forward hook on the plain torchvision module."""
    got = {}
    h = model.inception3a.branch2.register_forward_hook(lambda m, i, o: got.__setitem__("a", o.detach()))
    out = {}
    try:
        with torch.no_grad():
            for f in sorted(folder.glob("*.png")):
                model(_preprocess(f).unsqueeze(0))
                out[str(f)] = got["a"][0]
    finally:
        h.remove()
    return out


def test_top_images_and_crops_are_those_of_a_brute_force_scan(tmp_path, model, cm):
    folder = _folder(tmp_path)
    graph = zoo_block_graph("googlenet")
    with ExampleIndex(tmp_path / "db.sqlite") as index:
        report = index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="w", index=index,
                              batch_size=4)
        assert report.indexed == 10 and not report.failed
        _assert_brute_force_tops(index, model, folder)


def _assert_brute_force_tops(index, model, folder):
    """Every channel without ties keeps the brute-force scan's top images, maxima and positions."""
    acts = _brute_force(model, folder)
    paths = list(acts)
    checked = 0
    for c in range(acts[paths[0]].shape[0]):
        maxima = torch.stack([acts[p][c].max() for p in paths])
        if maxima.max() <= 0 or len(set(maxima.tolist())) < len(paths):
            continue  # a dead channel or a tie: any order would be right
        order = maxima.argsort(descending=True)[: ex.TOP_K].tolist()
        got = index.examples("googlenet", "w", NODE, BRANCH, c)
        assert [e.path for e in got] == [paths[i] for i in order]
        for e in got:
            a = acts[e.path][c]
            y, x = divmod(int(a.flatten().argmax()), a.shape[1])
            assert (e.y, e.x) == (y, x)
            assert e.value == pytest.approx(float(a.max()), rel=1e-4, abs=1e-5)
        checked += 1
    assert checked > 20


def _units(model, x):
    got = {}
    h = model.inception3a.branch2.register_forward_hook(lambda m, i, o: got.__setitem__("a", o.detach()))
    try:
        with torch.no_grad():
            model(x.unsqueeze(0))
    finally:
        h.remove()
    return got["a"][0]


def test_crop_box_is_the_receptive_field_of_the_maximum(tmp_path, model):
    """Changing every pixel outside the box leaves the unit unchanged; changing a line just inside any
    unclipped edge of the box changes it: the box is exactly what the unit sees."""
    graph = zoo_block_graph("googlenet")
    geom = target_geometry(graph, NODE, BRANCH)
    assert geom.field == (43, 43) and geom.stride == (8, 8)  # 7×7/2, pool 3/2, 3×3, pool 3/2, 3×3
    g = torch.Generator().manual_seed(3)
    x = (synthetic_batch(1, SIZE, g)[0] - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    units = _units(model, x)
    for y, xx in [(0, 0), (2, 3), (5, 5), (11, 7), (6, 11)]:
        t, l, b, r = geom.box(y, xx, SIZE, SIZE)
        c = int(units[:, y, xx].argmax())  # a unit that is not cut off by its ReLU
        base = float(units[c, y, xx])
        assert base > 0
        outside = x.clone()
        noise = torch.randn(x.shape, generator=g) * 3
        mask = torch.ones(SIZE, SIZE, dtype=torch.bool)
        mask[t:b, l:r] = False
        outside[:, mask] += noise[:, mask]
        assert float(_units(model, outside)[c, y, xx]) == pytest.approx(base, abs=1e-5)
        edges = {"top": (t, slice(t, t + 1), slice(l, r)), "left": (l, slice(t, b), slice(l, l + 1)),
                 "bottom": (b, slice(b - 1, b), slice(l, r)), "right": (r, slice(t, b), slice(r - 1, r))}
        for name, (pos, ys, xs) in edges.items():
            if pos in (0, SIZE):
                continue  # clipped by the image border
            edge = x.clone()
            edge[:, ys, xs] += 50 * torch.randn(edge[:, ys, xs].shape, generator=g)
            assert float(_units(model, edge)[c, y, xx]) != pytest.approx(base, abs=1e-4), (y, xx, name)


def test_reindexing_an_unchanged_folder_reads_no_image(tmp_path, cm, monkeypatch):
    folder = _folder(tmp_path, n=3)
    graph = zoo_block_graph("googlenet")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    with ExampleIndex(tmp_path / "db.sqlite") as index:
        first = index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="w", index=index)
        assert first.indexed == 3 and len(opened) == 3
        before = index.examples("googlenet", "w", NODE, BRANCH, 0)
        opened.clear()
        again = index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="w", index=index)
        assert (again.indexed, again.skipped, opened) == (0, 3, [])
        assert index.examples("googlenet", "w", NODE, BRANCH, 0) == before
        # Another weights hash is another index: everything is read again.
        other = index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="v", index=index)
        assert other.indexed == 3 and len(opened) == 3
        # A file that changed is read again, and only it.
        opened.clear()
        f = folder / "im01.png"
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
        changed = index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="w", index=index)
        assert (changed.indexed, changed.skipped) == (1, 2) and [str(p) for p in opened] == [str(f)]


def test_a_corrupt_image_is_skipped_with_a_note_and_the_index_completes(tmp_path, cm):
    folder = _folder(tmp_path, n=3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    notes = []
    graph = zoo_block_graph("googlenet")
    with ExampleIndex(tmp_path / "db.sqlite") as index:
        report = index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="w", index=index,
                              batch_size=2, note=lambda p, r: notes.append((p, r)))
        assert report.indexed == 3 and [p for p, _ in report.failed] == [str(folder / "broken.jpg")]
        assert notes and notes[0][0] == str(folder / "broken.jpg") and "decode" in notes[0][1]
        assert {e.path for e in index.examples("googlenet", "w", NODE, BRANCH, 3)} <= {
            str(folder / f"im{i:02d}.png") for i in range(3)}
        assert len(index.examples("googlenet", "w", NODE, BRANCH, 3)) == 3
        known = index.files("googlenet", "w")
        assert known[str(folder / "broken.jpg")][3] == 0  # recorded as failed: not retried until it changes


def test_a_cancelled_index_resumes_where_it_stopped(tmp_path, cm):
    from explorer.core.cancel import CancelToken

    folder = _folder(tmp_path, n=6)
    graph = zoo_block_graph("googlenet")
    token = CancelToken()
    with ExampleIndex(tmp_path / "db.sqlite") as index:
        first = index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="w", index=index,
                             batch_size=2, cancel=token, progress=lambda d, t: token.cancel() if d >= 2 else None)
        assert first.cancelled and first.indexed == 2
        rest = index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="w", index=index,
                            batch_size=2)
        assert (rest.indexed, rest.skipped) == (4, 2)
    with ExampleIndex(tmp_path / "whole.sqlite") as whole:
        index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="w", index=whole, batch_size=6)
        with ExampleIndex(tmp_path / "db.sqlite") as index:
            for c in (0, 7, 20):
                assert index.examples("googlenet", "w", NODE, BRANCH, c) == whole.examples("googlenet", "w", NODE, BRANCH, c)


class _Halves:
    """`_preprocess` in a decode pool's two halves (PIL, then tensor), recording the thread of each."""

    def __init__(self):
        self.prepared: list[str] = []
        self.finished: list[str] = []
        self.started: dict[str, threading.Event] = {}

    def __call__(self, path):
        return self.finish(self.prepare(path))

    def prepare(self, path):
        self.prepared.append(threading.current_thread().name)
        self.started.setdefault(str(path), threading.Event()).set()
        try:
            with Image.open(path) as im:
                return T.Resize((SIZE, SIZE))(im.convert("RGB"))
        except OSError as e:
            raise ImageLoadError(str(path), f"cannot decode: {e}") from None

    def finish(self, resized):
        self.finished.append(threading.current_thread().name)
        return T.Normalize(MEAN, STD)(T.ToTensor()(resized))


class _WatchedCapture:
    """The capture model, noting at each forward whether the next batch's decoding had begun."""

    def __init__(self, cm, halves, files, batch):
        self.cm, self.halves, self.files, self.batch = cm, halves, files, batch
        self.next_began_at_forward: list[bool] = []
        self.calls = 0

    def upcoming(self) -> list[threading.Event]:
        names = self.files[self.calls * self.batch : (self.calls + 1) * self.batch]
        return [self.halves.started.setdefault(f, threading.Event()) for f in names]

    def eval(self):
        return self.cm.eval()

    def capture(self, x):
        self.calls += 1
        upcoming = self.upcoming()
        if upcoming:
            self.next_began_at_forward.append(any(e.is_set() for e in upcoming))
        return self.cm.capture(x)


def test_index_decodes_on_the_pool_while_the_last_batch_is_stored(tmp_path, model, cm, monkeypatch):
    """The PIL half runs on the decode threads, the tensor half and the forward on the caller's; the next
    batch decodes while this batch's examples are stored, never beside the forward (whose OpenMP team
    waits for a thread a decode would take); a broken file in the middle is noted and the tops are still
    the brute-force scan's; the report says where the time went."""
    folder = _folder(tmp_path, n=8)
    (folder / "im03b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    files = sorted(str(f.resolve()) for f in folder.iterdir())
    halves = _Halves()
    capture = _WatchedCapture(cm, halves, files, 3)
    store = ex._store_batch
    next_began_while_storing = []

    def storing(*args, **kwargs):
        upcoming = capture.upcoming()
        if upcoming:
            next_began_while_storing.append(all(e.wait(10) for e in upcoming))
        return store(*args, **kwargs)

    monkeypatch.setattr(ex, "_store_batch", storing)
    notes = []
    with ExampleIndex(tmp_path / "db.sqlite") as index:
        report = index_folder(folder, capture, zoo_block_graph("googlenet"), halves, model="googlenet", weights="w",
                              index=index, batch_size=3, decode_workers=2, note=lambda p, r: notes.append(p))
        assert report.indexed == 8 and [p for p, _ in report.failed] == notes == [str(folder / "im03b.jpg")]
        assert next_began_while_storing == [True, True] and capture.next_began_at_forward == [False, False]
        assert halves.prepared and all(t.startswith("decode") for t in halves.prepared)
        assert halves.finished and set(halves.finished) == {threading.current_thread().name}
        _assert_brute_force_tops(index, model, folder)
    assert set(report.seconds) == {"decode", "forward", "top-k", "sqlite", "decode threads"}
    assert all(v >= 0 for v in report.seconds.values()) and report.seconds["forward"] > 0
    assert report.seconds["decode threads"] > 0 and report.seconds["top-k"] > 0
    assert not [t for t in threading.enumerate() if t.name.startswith("decode")]
