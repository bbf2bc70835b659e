"""Dataset examples: for every channel of every branch, the images of a folder that excite it most.

`index_folder` runs a folder through the capture model in batches and keeps, per channel of each
block's branches, the top-9 images, the position of the channel's maximum in each, and the
receptive-field box of that position in the network input (from the block graph's shape program:
receptive field, effective stride and the offset the paddings add). The index is a SQLite file next
to the cache, keyed by model reference, weights hash and file (path, size, modification time): a
second run over an unchanged folder stats the files and reads none; each batch is committed with the
files it covers, so a cancelled or killed run resumes where it stopped. A file that cannot be read
is recorded with its reason and skipped; the index completes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer.core.cancel import CancelToken, ProgressCallback

if TYPE_CHECKING:
    from explorer.core.blockgraph import BlockGraph

#: Images kept per channel.
TOP_K = 9
DB_NAME = "examples.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, model TEXT NOT NULL, weights TEXT NOT NULL, path TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ok INTEGER NOT NULL, note TEXT,
    UNIQUE (model, weights, path));
CREATE TABLE IF NOT EXISTS top (
    model TEXT NOT NULL, weights TEXT NOT NULL, node TEXT NOT NULL, branch INTEGER NOT NULL,
    channel INTEGER NOT NULL, rank INTEGER NOT NULL, value REAL NOT NULL, file_id INTEGER NOT NULL,
    y INTEGER NOT NULL, x INTEGER NOT NULL, box_top INTEGER NOT NULL, box_left INTEGER NOT NULL,
    box_bottom INTEGER NOT NULL, box_right INTEGER NOT NULL,
    PRIMARY KEY (model, weights, node, branch, channel, rank)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS top_file ON top (file_id);
"""


# -- receptive-field geometry -----------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """Where a unit of a feature map looks in the input: map position (y, x) is centred on input pixel
    start + (y, x) * stride and sees a field × field window (None: the whole input)."""

    field: tuple[int, int] | None
    stride: tuple[int, int] | None
    start: tuple[float, float] | None

    def box(self, y: int, x: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the receptive field of (y, x), bottom/right exclusive, clipped to
        the height × width input."""
        if self.field is None:
            return 0, 0, height, width
        (fh, fw), (sh, sw), (oh, ow) = self.field, self.stride, self.start
        top = round(oh + y * sh - (fh - 1) / 2)
        left = round(ow + x * sw - (fw - 1) / 2)
        return max(top, 0), max(left, 0), min(top + fh, height), min(left + fw, width)


def step_geometry(steps) -> list[Geometry | None]:
    """Per program step: its Geometry (the block graph's receptive field and effective stride, and the
    centre of unit (0, 0), which paddings shift by -padding × stride at each layer)."""
    out: list[Geometry | None] = [None] * len(steps)
    whole = Geometry(None, None, None)
    for s in steps:
        ins = [out[i] for i in s.inputs if out[i] is not None]
        if s.kind == "input":
            out[s.index] = Geometry((1, 1), (1, 1), (0.0, 0.0))
        elif s.attrs.get("constant"):
            continue
        elif s.kind in ("adaptive_pool", "flatten", "linear") or not ins or any(g.field is None for g in ins):
            out[s.index] = whole
        elif s.kind in ("conv", "pool"):
            g = ins[0]
            (ekh, ekw), (sh, sw), (ph, pw) = s.attrs["eff_kernel"], s.attrs["stride"], s.attrs["padding"]
            (rh, rw), (jh, jw), (oh, ow) = g.field, g.stride, g.start
            out[s.index] = Geometry((rh + (ekh - 1) * jh, rw + (ekw - 1) * jw), (jh * sh, jw * sw),
                                    (oh + ((ekh - 1) / 2 - ph) * jh, ow + ((ekw - 1) / 2 - pw) * jw))
        else:  # element-wise or a join: the widest input decides (branches of one block are aligned)
            out[s.index] = max(ins, key=lambda g: (g.field[0] * g.field[1], g.stride))
    return out


def target_geometry(graph: BlockGraph, node: str, branch: int | None) -> Geometry:
    """The Geometry of a node's output, or of one of its branches (0-based)."""
    bn = graph.node(node)
    step = bn.output_step if branch is None else bn.branch_steps[branch]
    geoms = getattr(graph, "_example_geometry", None)
    if geoms is None:
        geoms = graph._example_geometry = step_geometry(graph.program.steps)
    return geoms[step] or Geometry(None, None, None)


# -- the index -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One of a channel's top images: where its maximum is and the input box that sees it."""

    rank: int
    path: str
    value: float
    y: int
    x: int
    box: tuple[int, int, int, int]  # top, left, bottom, right in the network input (bottom/right exclusive)


@dataclass
class IndexReport:
    """What one `index_folder` run did."""

    indexed: int = 0
    skipped: int = 0  # known and unchanged: not read
    failed: list[tuple[str, str]] = None  # (path, reason)
    cancelled: bool = False

    def __post_init__(self):
        if self.failed is None:
            self.failed = []


def default_db_path() -> Path:
    from explorer.core.featurevis import cache_dir

    return cache_dir() / DB_NAME


class ExampleIndex:
    """The SQLite store of dataset examples (one file holds every model and weights)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def files(self, model: str, weights: str) -> dict[str, tuple[int, int, int, int, str | None]]:
        """path -> (id, size, mtime_ns, ok, note) of every file known for this model and weights."""
        rows = self.db.execute("SELECT path, id, size, mtime_ns, ok, note FROM files WHERE model=? AND weights=?",
                               (model, weights))
        return {r[0]: tuple(r[1:]) for r in rows}

    def examples(self, model: str, weights: str, node: str, branch: int, channel: int) -> list[Example]:
        """The top images of one channel of one branch (0-based), best first."""
        rows = self.db.execute(
            "SELECT t.rank, f.path, t.value, t.y, t.x, t.box_top, t.box_left, t.box_bottom, t.box_right "
            "FROM top t JOIN files f ON f.id = t.file_id WHERE t.model=? AND t.weights=? AND t.node=? "
            "AND t.branch=? AND t.channel=? ORDER BY t.rank", (model, weights, node, branch, channel))
        return [Example(r[0], r[1], r[2], r[3], r[4], tuple(r[5:9])) for r in rows]

    def indexed_targets(self, model: str, weights: str) -> list[tuple[str, int]]:
        """(node, branch) pairs that have examples for this model and weights."""
        rows = self.db.execute("SELECT DISTINCT node, branch FROM top WHERE model=? AND weights=?", (model, weights))
        return [(r[0], r[1]) for r in rows]


class _Top:
    """The running top-K of one branch: values, file ids and map positions per channel (torch, CPU)."""

    def __init__(self, channels: int):
        import torch

        self.values = torch.full((channels, TOP_K), float("-inf"))
        self.files = torch.full((channels, TOP_K), -1, dtype=torch.long)
        self.ys = torch.zeros((channels, TOP_K), dtype=torch.long)
        self.xs = torch.zeros((channels, TOP_K), dtype=torch.long)

    def merge(self, act, file_ids) -> Any:
        """Merge a batch's activations (B, C, H, W); returns the mask of channels whose top changed."""
        import torch

        b, c = act.shape[:2]
        flat = act.reshape(b, c, -1) if act.dim() == 4 else act.reshape(b, c, 1)
        w = act.shape[3] if act.dim() == 4 else 1
        vals, idx = flat.max(dim=2)  # (B, C)
        values = torch.cat([self.values, vals.T.float()], 1)
        files = torch.cat([self.files, torch.as_tensor(file_ids).view(1, -1).expand(c, -1)], 1)
        ys = torch.cat([self.ys, (idx // w).T], 1)
        xs = torch.cat([self.xs, (idx % w).T], 1)
        top, order = values.topk(TOP_K, dim=1)  # sorted, best first
        new_files = files.gather(1, order)
        changed = (new_files != self.files).any(1)
        self.values, self.files = top, new_files
        self.ys, self.xs = ys.gather(1, order), xs.gather(1, order)
        return changed


def _load_tops(index: ExampleIndex, model: str, weights: str, shapes: dict[tuple[str, int], int]):
    tops = {key: _Top(c) for key, c in shapes.items()}
    rows = index.db.execute("SELECT node, branch, channel, rank, value, file_id, y, x FROM top "
                            "WHERE model=? AND weights=?", (model, weights))
    for node, branch, ch, rank, value, fid, y, x in rows:
        t = tops.get((node, branch))
        if t is not None and ch < t.values.shape[0] and rank < TOP_K:
            t.values[ch, rank], t.files[ch, rank], t.ys[ch, rank], t.xs[ch, rank] = value, fid, y, x
    return tops


def index_folder(folder: str | os.PathLike, cm, graph: BlockGraph, preprocess: Callable[[str], Any], *,
                 model: str, weights: str, index: ExampleIndex, batch_size: int = 16, recursive: bool = True,
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                 note: Callable[[str, str], None] | None = None) -> IndexReport:
    """Index the images under `folder` through CaptureModel `cm` (whose block graph is `graph`).

    preprocess(path) gives the (3, H, W) network input or raises `ImageLoadError`; note(path, reason)
    hears of each file that could not be read. Known files whose size and mtime are unchanged are not
    read. A file that changed is indexed again and its old examples dropped (its channels then keep
    the best of the rest until the folder is indexed afresh)."""
    import torch

    from explorer.core.images import ImageLoadError, expand_inputs

    report = IndexReport()
    files = expand_inputs([folder], recursive=recursive)
    known = index.files(model, weights)
    todo: list[tuple[str, int, int]] = []
    stale: list[int] = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError as e:
            report.failed.append((str(f), e.strerror or str(e)))
            if note is not None:
                note(str(f), e.strerror or str(e))
            continue
        k = known.get(str(f))
        if k is not None and k[1] == st.st_size and k[2] == st.st_mtime_ns:
            report.skipped += 1
            continue
        if k is not None:
            stale.append(k[0])
        todo.append((str(f), st.st_size, st.st_mtime_ns))
    if not todo:
        return report
    with index._lock:
        if stale:
            with index.db:
                index.db.executemany("DELETE FROM top WHERE file_id=?", [(i,) for i in stale])
                index.db.executemany("DELETE FROM files WHERE id=?", [(i,) for i in stale])

        tops: dict[tuple[str, int], _Top] | None = None
        done = 0
        total = len(todo)
        cm.eval()  # its modules are shared with the loaded network, which always runs in eval mode
        for start in range(0, total, batch_size):
            if cancel is not None and cancel.cancelled:
                report.cancelled = True
                break
            chunk = todo[start : start + batch_size]
            tensors, good, bad = [], [], []
            for path, size, mtime in chunk:
                try:
                    tensors.append(preprocess(path))
                    good.append((path, size, mtime))
                except ImageLoadError as e:
                    bad.append((path, size, mtime, e.reason))
                    report.failed.append((path, e.reason))
                    if note is not None:
                        note(path, e.reason)
            with torch.no_grad():
                cap = cm.capture(torch.stack(tensors)) if tensors else None
            with index.db:  # one transaction: the batch's files and the examples they bring
                ids = []
                for path, size, mtime in good:
                    cur = index.db.execute(
                        "INSERT OR REPLACE INTO files (model, weights, path, size, mtime_ns, ok, note) "
                        "VALUES (?, ?, ?, ?, ?, 1, NULL)", (model, weights, path, size, mtime))
                    ids.append(cur.lastrowid)
                index.db.executemany(
                    "INSERT OR REPLACE INTO files (model, weights, path, size, mtime_ns, ok, note) "
                    "VALUES (?, ?, ?, ?, ?, 0, ?)", [(model, weights, *b) for b in bad])
                if cap is not None:
                    if tops is None:
                        shapes = {(blk, k): int(t.shape[1]) for blk, ts in cap.branches.items()
                                  for k, t in enumerate(ts) if t is not None}
                        tops = _load_tops(index, model, weights, shapes)
                    h, w = int(tensors[0].shape[1]), int(tensors[0].shape[2])
                    for blk, ts in cap.branches.items():
                        for k, t in enumerate(ts):
                            if t is None:
                                continue
                            top = tops[(blk, k)]
                            changed = top.merge(t.float().cpu(), ids)
                            _write_channels(index, model, weights, blk, k, top, changed,
                                            target_geometry(graph, blk, k), h, w)
            report.indexed += len(good)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return report


def _write_channels(index, model, weights, node, branch, top: _Top, changed, geom: Geometry, h: int, w: int):
    chans = changed.nonzero().flatten().tolist()
    if not chans:
        return
    index.db.executemany("DELETE FROM top WHERE model=? AND weights=? AND node=? AND branch=? AND channel=?",
                         [(model, weights, node, branch, c) for c in chans])
    values, files, ys, xs = (top.values.tolist(), top.files.tolist(), top.ys.tolist(), top.xs.tolist())
    rows = []
    for c in chans:
        for r in range(TOP_K):
            if files[c][r] < 0:
                break
            y, x = ys[c][r], xs[c][r]
            rows.append((model, weights, node, branch, c, r, values[c][r], files[c][r], y, x, *geom.box(y, x, h, w)))
    index.db.executemany("INSERT INTO top VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def example_crop(example: Example, preprocess: Callable[[str], Any], mean, std):
    """The receptive-field crop of an example: its box cut from the de-normalised network input,
    (h, w, 3) uint8."""
    import torch

    x = preprocess(example.path)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    t, l, b, r = example.box
    rgb = ((x.float() * s + m).clamp(0, 1) * 255).round().to(torch.uint8)[:, t:b, l:r]
    return rgb.permute(1, 2, 0).contiguous().numpy()
