"""Dataset examples: for every channel of every branch, the images of a folder that excite it most.

`index_folder` runs a folder through the capture model in batches and keeps, per channel of each
block's branches, the top-9 images, the position of the channel's maximum in each, and the
receptive-field box of that position in the network input (from the block graph's shape program:
receptive field, effective stride and the offset the paddings add). The index is a SQLite file next
to the cache, keyed by model reference, weights hash and file (path, size, modification time): a
second run over an unchanged folder stats the files and reads none; each batch is committed with the
files it covers, so a cancelled or killed run resumes where it stopped. Images are decoded on the
classifier's decode pool (`DecodeAhead`) in parallel, the next batch while this one is stored. A file that cannot be read
is recorded with its reason and skipped; the index completes.

The index is marked as ours (PRAGMA application_id) and no other file is ever written: an existing
file is judged from its header before SQLite may write to it. Runs writing one index at once take
turns batch by batch, and every SQLite failure (damaged, read-only, locked, disk full) is one
`ExampleIndexError` line.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer.core.cancel import CancelToken, ProgressCallback

if TYPE_CHECKING:
    from explorer.core.graph.blockgraph import BlockGraph

#: Images kept per channel.
TOP_K = 9
DB_NAME = "examples.sqlite"

#: Marks an SQLite file as this program's example index (PRAGMA application_id; "IEx1").
APPLICATION_ID = int.from_bytes(b"IEx1", "big")
#: How long a run waits for an index another run holds before refusing it, and after how long (at most)
#: it says that it waits.
LOCK_WAIT_S = 30.0
NOTICE_AFTER_S = 1.0
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, model TEXT NOT NULL, weights TEXT NOT NULL, path TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ok INTEGER NOT NULL, note TEXT,
    UNIQUE (model, weights, path))""",
    """CREATE TABLE IF NOT EXISTS top (
    model TEXT NOT NULL, weights TEXT NOT NULL, node TEXT NOT NULL, branch INTEGER NOT NULL,
    channel INTEGER NOT NULL, rank INTEGER NOT NULL, value REAL NOT NULL, file_id INTEGER NOT NULL,
    y INTEGER NOT NULL, x INTEGER NOT NULL, box_top INTEGER NOT NULL, box_left INTEGER NOT NULL,
    box_bottom INTEGER NOT NULL, box_right INTEGER NOT NULL,
    PRIMARY KEY (model, weights, node, branch, channel, rank)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS top_file ON top (file_id)",
)
_COLUMNS = {
    "files": ("id", "model", "weights", "path", "size", "mtime_ns", "ok", "note"),
    "top": ("model", "weights", "node", "branch", "channel", "rank", "value", "file_id", "y", "x", "box_top",
            "box_left", "box_bottom", "box_right"),
}


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
    #: Seconds by stage on the calling thread: "decode" (waiting for the pool, and the transform's
    #: last step), "forward" (the capture), "top-k" (merging into each channel's top-9), "sqlite" (rows
    #: and commits); "decode threads": decoding summed over the pool's threads, beside the rest.
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.failed is None:
            self.failed = []


class ExampleIndexError(ValueError):
    """An index that cannot be used (not ours, damaged, read-only, locked, its disk full): one line.

    kind: "foreign", "damaged", "readonly", "locked", "full", "io", "missing" or "other"."""

    def __init__(self, message: str, kind: str = "other"):
        super().__init__(message)
        self.kind = kind


def default_db_path() -> Path:
    from explorer.core.microscope.featurevis import cache_dir

    return cache_dir() / DB_NAME


def _index_error(path: Path, e: sqlite3.Error) -> ExampleIndexError:
    """One line for an SQLite error on the index at `path`."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return ExampleIndexError(f"{path}: the index is locked by another program", "locked")
    if name.startswith("SQLITE_READONLY"):
        return ExampleIndexError(f"{path}: the index is read-only: nothing can be added to it", "readonly")
    if name.startswith("SQLITE_FULL"):
        return ExampleIndexError(f"{path}: the disk is full; the index keeps what it had", "full")
    if name.startswith("SQLITE_IOERR"):
        return ExampleIndexError(f"{path}: cannot read or write the index ({text}; is the disk full?); "
                                 "it keeps what it had", "io")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return ExampleIndexError(f"{path}: the index is damaged ({text}); delete it to index again", "damaged")
    if name.startswith("SQLITE_CANTOPEN"):
        return ExampleIndexError(f"{path}: cannot open the index ({text})", "io")
    return ExampleIndexError(f"{path}: {text}")


def _is_busy(e: sqlite3.Error) -> bool:
    return (getattr(e, "sqlite_errorname", "") or "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _table_kind(db: sqlite3.Connection) -> str:
    """"empty" (no tables), "ours" (exactly our tables and columns) or "other"."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    if not names:
        return "empty"
    if sorted(names) != sorted(_COLUMNS):
        return "other"
    for table, columns in _COLUMNS.items():
        if tuple(r[1] for r in db.execute(f"PRAGMA table_info({table})")) != columns:
            return "other"
    return "ours"


def _identify(path: Path) -> str:
    """What `path` is, judged before SQLite opens it for writing: "new" (absent or empty), "ours" (our
    application_id in its header) or "unmarked" (an index of ours from before the mark). Anything else
    raises ExampleIndexError, the file untouched: a folder, a FIFO, random bytes or text are refused from
    their first bytes, another program's SQLite file from its header or, unmarked, from its tables (read
    through a connection that cannot write)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "new"
    except OSError as e:
        raise ExampleIndexError(f"{path}: {e.strerror or e}", "io") from None
    if stat.S_ISDIR(st.st_mode):
        raise ExampleIndexError(f"{path} is a folder, not an example index", "foreign")
    if not stat.S_ISREG(st.st_mode):
        raise ExampleIndexError(f"{path} is not a regular file, so not an example index", "foreign")
    if st.st_size == 0:
        return "new"
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError as e:
        raise ExampleIndexError(f"cannot read {path}: {e.strerror or e}", "io") from None
    if not head.startswith(_SQLITE_MAGIC):
        raise ExampleIndexError(f"{path} is not an example index (not an SQLite file); left untouched", "foreign")
    if len(head) < 100:
        raise ExampleIndexError(f"{path}: the index is cut short (damaged); delete it to index again", "damaged")
    app = int.from_bytes(head[68:72], "big")
    if app == APPLICATION_ID:
        return "ours"
    foreign = ExampleIndexError(f"{path} is another program's SQLite file, not an example index; left untouched",
                                "foreign")
    if app != 0:
        raise foreign
    # A WAL-mode file without its -wal opened read-only would still get -wal and -shm files beside it: read
    # it as immutable instead (no locks, no side files). Otherwise a read-only open takes a shared lock only.
    wal = head[18] == 2 and not Path(str(path) + "-wal").exists()
    uri = path.resolve().as_uri() + ("?immutable=1" if wal else "?mode=ro")
    try:
        con = sqlite3.connect(uri, uri=True, timeout=NOTICE_AFTER_S)
        try:
            kind = _table_kind(con)
        finally:
            con.close()
    except sqlite3.Error as e:
        raise ExampleIndexError(f"{path} is not a readable example index ({e}); left untouched", "foreign") from None
    if kind != "ours":
        raise foreign
    return "unmarked"


class ExampleIndex:
    """The SQLite store of dataset examples (one file holds every model and weights).

    Only a file this program made is ever written to (see `_identify`); every failure is an
    ExampleIndexError. A lock another run holds is waited for, silently for a moment, then with one
    on_wait(message), and refused after lock_wait seconds."""

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True,
                 lock_wait: float | None = None, on_wait: Callable[[str], None] | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self.lock_wait = LOCK_WAIT_S if lock_wait is None else lock_wait
        self.on_wait = on_wait
        self._lock = threading.Lock()
        self.db = None
        if _identify(self.path) == "new":
            if not create:
                raise ExampleIndexError(f"{self.path}: no index there yet", "missing")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ExampleIndexError(f"{self.path}: cannot create its folder: {e.strerror or e}", "io") from None
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=0)
            self._prepare()
        except sqlite3.Error as e:
            self.close()
            raise _index_error(self.path, e) from None
        except BaseException:
            self.close()
            raise

    def _prepare(self) -> None:
        """Give a new or unmarked index our mark and tables, and WAL journaling (the window reads while a
        run writes). A read-only index is left as it is, for reading."""
        if self._wait(lambda: self.db.execute("PRAGMA application_id").fetchone()[0]) != APPLICATION_ID:
            try:
                with self.transaction() as db:
                    app = db.execute("PRAGMA application_id").fetchone()[0]
                    kind = _table_kind(db)
                    if app != APPLICATION_ID:
                        if app != 0 or kind == "other":  # replaced under us since _identify
                            raise ExampleIndexError(f"{self.path} is another program's SQLite file, not an "
                                                    "example index; left untouched", "foreign")
                        for statement in _SCHEMA:
                            db.execute(statement)
                        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            except ExampleIndexError as e:
                if e.kind != "readonly" or self._wait(lambda: _table_kind(self.db)) != "ours":
                    raise
        mode = self._wait(lambda: self.db.execute("PRAGMA journal_mode").fetchone()[0])
        if mode.lower() != "wal":
            try:
                self._wait(lambda: self.db.execute("PRAGMA journal_mode=WAL").fetchone())
            except sqlite3.Error as e:
                if not (getattr(e, "sqlite_errorname", "") or "").startswith("SQLITE_READONLY"):
                    raise

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass  # a checkpoint that failed leaves the -wal file, which the next open replays

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _errors(self):
        """SQLite errors become one-line ExampleIndexErrors."""
        try:
            yield
        except sqlite3.Error as e:
            raise _index_error(self.path, e) from None

    def _wait(self, call: Callable[[], Any]) -> Any:
        """call() (SQLite statements), retried while another connection holds the lock it needs."""
        start = time.monotonic()
        notice_at = start + min(NOTICE_AFTER_S, self.lock_wait / 10)
        deadline = start + self.lock_wait
        told = False
        while True:
            now = time.monotonic()
            self.db.execute(f"PRAGMA busy_timeout = {max(int(((deadline if told else notice_at) - now) * 1000), 10)}")
            try:
                return call()
            except sqlite3.OperationalError as e:
                if not _is_busy(e):
                    raise
            now = time.monotonic()
            if now >= deadline:
                raise ExampleIndexError(f"{self.path}: the index is held by another run; gave up after "
                                        f"{self.lock_wait:g} s", "locked")
            if not told and now >= notice_at:
                told = True
                if self.on_wait is not None:
                    self.on_wait(f"waiting for {self.path}: held by another run (up to {self.lock_wait:g} s)")
            time.sleep(0.02)  # a lock SQLite reports at once, without waiting: poll it

    @contextmanager
    def transaction(self):
        """One write transaction, BEGIN IMMEDIATE: runs writing the same index take turns. Rolled back on
        any error; SQLite errors become ExampleIndexErrors."""
        with self._errors():
            self._wait(lambda: self.db.execute("BEGIN IMMEDIATE"))
            try:
                yield self.db
                self._wait(lambda: self.db.execute("COMMIT"))
            except BaseException:
                if self.db.in_transaction:
                    try:
                        self.db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    def check_writable(self) -> None:
        """Refuse a read-only index, and wait for a locked one, before any work: a write, rolled back."""
        with self._errors():
            self._wait(lambda: self.db.execute("BEGIN IMMEDIATE"))
            try:
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            finally:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")

    def _rows(self, sql: str, params: tuple) -> list[tuple]:
        with self._errors():
            return self._wait(lambda: self.db.execute(sql, params).fetchall())

    def files(self, model: str, weights: str) -> dict[str, tuple[int, int, int, int, str | None]]:
        """path -> (id, size, mtime_ns, ok, note) of every file known for this model and weights."""
        rows = self._rows("SELECT path, id, size, mtime_ns, ok, note FROM files WHERE model=? AND weights=?",
                          (model, weights))
        return {r[0]: tuple(r[1:]) for r in rows}

    def examples(self, model: str, weights: str, node: str, branch: int, channel: int) -> list[Example]:
        """The top images of one channel of one branch (0-based), best first."""
        rows = self._rows(
            "SELECT t.rank, f.path, t.value, t.y, t.x, t.box_top, t.box_left, t.box_bottom, t.box_right "
            "FROM top t JOIN files f ON f.id = t.file_id WHERE t.model=? AND t.weights=? AND t.node=? "
            "AND t.branch=? AND t.channel=? ORDER BY t.rank", (model, weights, node, branch, channel))
        return [Example(r[0], r[1], r[2], r[3], r[4], tuple(r[5:9])) for r in rows]

    def indexed_targets(self, model: str, weights: str) -> list[tuple[str, int]]:
        """(node, branch) pairs that have examples for this model and weights."""
        rows = self._rows("SELECT DISTINCT node, branch FROM top WHERE model=? AND weights=?", (model, weights))
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
        """Merge a batch's activations (B, C, H, W) of files `file_ids`, replacing what those files held
        (a file indexed again, or already by another run); returns the mask of channels whose top changed."""
        import torch

        b, c = act.shape[:2]
        flat = act.reshape(b, c, -1) if act.dim() == 4 else act.reshape(b, c, 1)
        w = act.shape[3] if act.dim() == 4 else 1
        vals, idx = flat.max(dim=2)  # (B, C)
        ids = torch.as_tensor(file_ids, dtype=torch.long)
        replaced = torch.isin(self.files, ids)
        values = torch.cat([self.values.masked_fill(replaced, float("-inf")), vals.T.float()], 1)
        files = torch.cat([self.files.masked_fill(replaced, -1), ids.view(1, -1).expand(c, -1)], 1)
        ys = torch.cat([self.ys, (idx // w).T], 1)
        xs = torch.cat([self.xs, (idx % w).T], 1)
        top, order = values.topk(TOP_K, dim=1)  # sorted, best first
        new_files = files.gather(1, order)
        changed = (new_files != self.files).any(1)
        self.values, self.files = top, new_files
        self.ys, self.xs = ys.gather(1, order), xs.gather(1, order)
        return changed


def _load_tops(db: sqlite3.Connection, model: str, weights: str, shapes: dict[tuple[str, int], int]):
    """The tops as the index holds them now (one tensor assignment per branch: a run that merges into
    another's writes re-reads them every batch)."""
    import torch

    tops = {key: _Top(c) for key, c in shapes.items()}
    by_branch: dict[tuple[str, int], list[tuple]] = {}
    for node, branch, *rest in db.execute("SELECT node, branch, channel, rank, value, file_id, y, x FROM top "
                                          "WHERE model=? AND weights=?", (model, weights)):
        by_branch.setdefault((node, branch), []).append(rest)
    for key, rows in by_branch.items():
        t = tops.get(key)
        if t is None:
            continue
        a = torch.tensor(rows, dtype=torch.float64)  # channel, rank, value, file_id, y, x (ids exact below 2**53)
        a = a[(a[:, 0] < t.values.shape[0]) & (a[:, 1] < TOP_K)]
        ch, rank = a[:, 0].long(), a[:, 1].long()
        t.values[ch, rank] = a[:, 2].float()
        t.files[ch, rank], t.ys[ch, rank], t.xs[ch, rank] = a[:, 3].long(), a[:, 4].long(), a[:, 5].long()
    return tops


def _file_ids(db: sqlite3.Connection, model: str, weights: str, rows, ok: int) -> list[int]:
    """Record files (path, size, mtime_ns, note); a path already known keeps its id, so examples that
    point at it (another run's included) stay valid."""
    ids = []
    for path, size, mtime, note in rows:
        db.execute("INSERT INTO files (model, weights, path, size, mtime_ns, ok, note) VALUES (?, ?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (model, weights, path) DO UPDATE SET size=excluded.size, "
                   "mtime_ns=excluded.mtime_ns, ok=excluded.ok, note=excluded.note",
                   (model, weights, path, size, mtime, ok, note))
        ids.append(db.execute("SELECT id FROM files WHERE model=? AND weights=? AND path=?",
                              (model, weights, path)).fetchone()[0])
    return ids


def _keys(folder: str | os.PathLike, recursive: bool) -> list[str]:
    """The folder's image files as index keys: resolved paths (a folder named relatively, absolutely or
    through a link is one folder; a link to an image beside it is that image), each once."""
    from explorer.core.classify.images import expand_inputs

    out: dict[str, None] = {}
    for f in expand_inputs([Path(folder).resolve()], recursive=recursive):
        try:
            out.setdefault(str(f.resolve()), None)
        except (OSError, RuntimeError):  # a link loop: kept by its name, reported when stat fails
            out.setdefault(str(f), None)
    return list(out)


def index_folder(folder: str | os.PathLike, cm, graph: BlockGraph, preprocess: Callable[[str], Any], *,
                 model: str, weights: str, index: ExampleIndex, batch_size: int = 16, recursive: bool = True,
                 progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                 note: Callable[[str, str], None] | None = None, decode_workers: int | None = None) -> IndexReport:
    """Index the images under `folder` through CaptureModel `cm` (whose block graph is `graph`).

    preprocess(path) gives the (3, H, W) network input or raises `ImageLoadError`; it runs on a decode
    pool of `decode_workers` threads (None: the classifier's CPU default), the next batch's while this
    batch's examples are stored, and when it has `prepare` and `finish` halves (a `CpuPreprocess`) only
    `prepare` runs there.
    note(path, reason) hears of each file that could not be read. Known files whose size and mtime
    are unchanged are not read. A file that changed is indexed again and its old examples dropped (its
    channels then keep the best of the rest until the folder is indexed afresh). Runs writing one
    index at once take turns batch by batch; each batch merges into the tops as they are then
    (re-read when another run wrote since), so no example points at a file row that is gone. Raises
    ExampleIndexError."""
    from explorer.core.classify.batching import DecodeAhead, decode_worker_count

    report = IndexReport()
    known = index.files(model, weights)
    todo, stale = _changed_files(_keys(folder, recursive), known, report, note)
    if not todo:
        return report
    seconds = report.seconds
    prepare, finish = _halves(preprocess, seconds)
    thread_seconds: list[float] = []

    def decode(i: int):
        t0 = time.perf_counter()
        try:
            return prepare(todo[i][0])
        finally:
            thread_seconds.append(time.perf_counter() - t0)

    ahead = DecodeAhead(decode_worker_count(False, decode_workers))
    try:
        with index._lock:
            index.check_writable()  # a read-only or locked index is refused before any image is read
            import torch

            _drop_files(index, stale)
            tops: dict[tuple[str, int], _Top] | None = None
            seen_version = None  # PRAGMA data_version when `tops` was last in step with the file
            done = 0
            total = len(todo)
            cm.eval()  # its modules are shared with the loaded network, which always runs in eval mode
            for start in range(0, total, batch_size):
                if cancel is not None and cancel.cancelled:
                    report.cancelled = True
                    break
                stop = min(start + batch_size, total)
                chunk = todo[start:stop]
                t0 = time.perf_counter()
                futures = ahead.take(decode, start, stop, stop)
                tensors, good, bad = _read_images(chunk, futures, finish, report, note)
                t1 = time.perf_counter()
                with torch.no_grad():
                    cap = cm.capture(torch.stack(tensors)) if tensors else None
                t2 = time.perf_counter()
                # The next batch decodes while this one's top-k and rows are stored (one core's work),
                # not beside the forward: the forward's OpenMP team waits for its slowest thread, and a
                # decode thread taking a core from it cost more than the decode (bench_index, 2 cores).
                ahead.queue(decode, stop, min(stop + batch_size, total))
                merge: list[float] = []
                with index.transaction() as db:  # the batch's files and the examples they bring, at once
                    version = db.execute("PRAGMA data_version").fetchone()[0]
                    if version != seen_version:
                        tops = None  # another connection wrote since: merge into what is there now
                    tops = _store_batch(db, model, weights, graph, good, bad, cap, tensors, tops, merge)
                _add_times(seconds, t0, t1, t2, time.perf_counter(), sum(merge))
                seen_version = version
                report.indexed += len(good)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    finally:
        ahead.close()
        seconds["decode threads"] = sum(thread_seconds)
    return report


def _add_times(seconds: dict, t0: float, t1: float, t2: float, t3: float, merge: float) -> None:
    """A batch's time by stage: decode (t0–t1), forward (t1–t2), top-k merging and SQLite (t2–t3)."""
    seconds["decode"] += t1 - t0
    seconds["forward"] += t2 - t1
    seconds["top-k"] += merge
    seconds["sqlite"] += t3 - t2 - merge


def _halves(preprocess, seconds: dict) -> tuple:
    """(prepare, finish) of `preprocess` (finish None when it has no halves: it all runs on the decode pool); the
    report's stages start at 0 s."""
    for stage in ("decode", "forward", "top-k", "sqlite", "decode threads"):
        seconds[stage] = 0.0
    prepare, finish = getattr(preprocess, "prepare", None), getattr(preprocess, "finish", None)
    return (preprocess, None) if prepare is None or finish is None else (prepare, finish)


def _drop_files(index, ids: list[int]) -> None:
    """Forget the files `ids` and the examples they brought (they changed on disk)."""
    if ids:
        with index.transaction() as db:
            db.executemany("DELETE FROM top WHERE file_id=?", [(i,) for i in ids])
            db.executemany("DELETE FROM files WHERE id=?", [(i,) for i in ids])


def _changed_files(keys: list[str], known: dict[str, tuple], report: IndexReport,
                   note: Callable[[str, str], None] | None) -> tuple[list[tuple[str, int, int]], list[int]]:
    """(todo, stale): the files among `keys` to read, as (path, size, mtime_ns), and the ids of the known
    ones among them, which changed since. Unchanged known files are counted as skipped, files that
    cannot be stat'ed as failed."""
    todo: list[tuple[str, int, int]] = []
    stale: list[int] = []
    for f in keys:
        try:
            st = os.stat(f)
        except OSError as e:
            report.failed.append((f, e.strerror or str(e)))
            if note is not None:
                note(f, e.strerror or str(e))
            continue
        k = known.get(f)
        if k is not None and k[1] == st.st_size and k[2] == st.st_mtime_ns:
            report.skipped += 1
            continue
        if k is not None:
            stale.append(k[0])
        todo.append((f, st.st_size, st.st_mtime_ns))
    return todo, stale


def _read_images(chunk: list[tuple[str, int, int]], futures: list, finish: Callable[[Any], Any] | None,
                 report: IndexReport, note: Callable[[str, str], None] | None) -> tuple[list, list[tuple], list[tuple]]:
    """(tensors, good, bad): the network inputs of a batch's files (from the decode pool's `futures`,
    then `finish` when the pool ran only the first half), and the files as rows for `_file_ids`
    (path, size, mtime_ns, note): those read, and those that could not be (failed, noted)."""
    from explorer.core.classify.images import ImageLoadError

    tensors, good, bad = [], [], []
    for (path, size, mtime), future in zip(chunk, futures):
        try:
            prepared = future.result()
            tensors.append(finish(prepared) if finish is not None else prepared)
            good.append((path, size, mtime, None))
        except ImageLoadError as e:
            bad.append((path, size, mtime, e.reason))
            report.failed.append((path, e.reason))
            if note is not None:
                note(path, e.reason)
    return tensors, good, bad


def _store_batch(db: sqlite3.Connection, model: str, weights: str, graph: BlockGraph, good: list[tuple],
                 bad: list[tuple], cap, tensors: list, tops: dict[tuple[str, int], _Top] | None,
                 merge_seconds: list[float] | None = None) -> dict[tuple[str, int], _Top] | None:
    """Record a batch's files and merge its captured branches (`cap`, None when no file was read) into
    the tops, writing the channels whose top changed; in the batch's transaction `db`. `tops`: as the
    index held them after the last batch, or None to re-read them. Returns the tops as they now are.
    merge_seconds: the time of each branch's merge is appended to it (the rest is SQLite's)."""
    ids = _file_ids(db, model, weights, good, 1)
    bad_ids = _file_ids(db, model, weights, bad, 0)
    if bad_ids and db.execute(f"DELETE FROM top WHERE file_id IN ({','.join('?' * len(bad_ids))})",
                              bad_ids).rowcount:
        tops = None  # a file that another run read is unreadable now
    if cap is None:
        return tops
    if tops is None:
        shapes = {(blk, k): int(t.shape[1]) for blk, ts in cap.branches.items()
                  for k, t in enumerate(ts) if t is not None}
        tops = _load_tops(db, model, weights, shapes)
    h, w = int(tensors[0].shape[1]), int(tensors[0].shape[2])
    for blk, ts in cap.branches.items():
        for k, t in enumerate(ts):
            if t is None:
                continue
            top = tops[(blk, k)]
            t0 = time.perf_counter()
            changed = top.merge(t.float().cpu(), ids)
            if merge_seconds is not None:
                merge_seconds.append(time.perf_counter() - t0)
            _write_channels(db, model, weights, blk, k, top, changed, target_geometry(graph, blk, k), h, w)
    return tops


def _write_channels(db, model, weights, node, branch, top: _Top, changed, geom: Geometry, h: int, w: int):
    chans = changed.nonzero().flatten().tolist()
    if not chans:
        return
    db.executemany("DELETE FROM top WHERE model=? AND weights=? AND node=? AND branch=? AND channel=?",
                   [(model, weights, node, branch, c) for c in chans])
    values, files, ys, xs = (top.values.tolist(), top.files.tolist(), top.ys.tolist(), top.xs.tolist())
    rows = []
    for c in chans:
        for r in range(TOP_K):
            if files[c][r] < 0:
                break
            y, x = ys[c][r], xs[c][r]
            rows.append((model, weights, node, branch, c, r, values[c][r], files[c][r], y, x, *geom.box(y, x, h, w)))
    db.executemany("INSERT INTO top VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


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
