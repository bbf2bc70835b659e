"""The dataset-example index against hostile files and runs (issue 29): what is not our index is refused
in one line and left byte for byte as it was; a damaged, read-only or locked index and a full disk are one
line too; two runs at once leave no example without its file row; a folder named two ways is one folder."""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.core.microscope import examples as ex
from explorer.core.graph.capture import CaptureModel
from explorer.core.microscope.examples import ExampleIndex, ExampleIndexError, index_folder
from explorer.core.model.graphs import zoo_block_graph
from tests.core.test_examples import BRANCH, NODE, _folder, _preprocess
from tests.netutil import calibrated_model

REPO = Path(__file__).resolve().parents[2]
#: The index's tables as the version before the application_id mark wrote them.
UNMARKED_SCHEMA = """
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


@pytest.fixture(scope="module")
def cm():
    return CaptureModel(calibrated_model("googlenet"), zoo_block_graph("googlenet")).eval()


def _fill(db: Path, files: int = 300) -> None:
    """An index of ours with `files` file rows and their examples (several pages), written directly."""
    with ExampleIndex(db) as index:
        con = index.db
        con.execute("BEGIN")
        for i in range(files):
            con.execute("INSERT INTO files (model, weights, path, size, mtime_ns, ok, note) VALUES "
                        "('m', 'w', ?, 1, 1, 1, NULL)", (f"/photos/{i:05d}-{'x' * 60}.png",))
        con.executemany("INSERT INTO top VALUES ('m', 'w', 'inception3a', 1, ?, ?, ?, ?, 0, 0, 0, 0, 9, 9)",
                        [(c, r, float(c + r), 1 + (c * 9 + r) % files) for c in range(64) for r in range(ex.TOP_K)])
        con.execute("COMMIT")


def _state(path: Path) -> tuple:
    """What must not change: the bytes under `path` and the names beside it (no -wal, -shm, -journal)."""
    if path.is_dir():
        content = sorted((p.name, p.read_bytes()) for p in path.iterdir())
    else:
        content = hashlib.sha256(path.read_bytes()).hexdigest()
    return content, sorted(p.name for p in path.parent.iterdir())


def _foreign(path: Path, app_id: int = 0, tables: str = "notes", wal: bool = False) -> None:
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    if app_id:
        con.execute(f"PRAGMA application_id = {app_id}")
    if tables == "ours":  # our table names and columns, but another program's mark
        con.executescript(UNMARKED_SCHEMA)
    elif tables == "lookalike":  # our table names, other columns
        con.execute("CREATE TABLE files (name TEXT)")
        con.execute("CREATE TABLE top (score REAL)")
    else:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.commit()
    con.close()


def _make(kind: str, where: Path) -> Path:
    """A --db of `kind` in folder `where`."""
    path = where / "index.sqlite"
    if kind == "random bytes":
        path.write_bytes(random.Random(29).randbytes(20_000))
    elif kind == "text file":
        path.write_text("these are my notes\n" * 200)
    elif kind == "folder":
        path.mkdir()
        (path / "keep.txt").write_text("mine")
    elif kind in ("half-cut index", "cut header"):
        _fill(path)
        data = path.read_bytes()
        assert len(data) > 40_000
        path.write_bytes(data[: len(data) // 2] if kind == "half-cut index" else data[:60])
    elif kind == "foreign sqlite":
        _foreign(path)
    elif kind == "foreign sqlite, WAL":
        _foreign(path, wal=True)
    elif kind == "foreign sqlite, our table names":
        _foreign(path, tables="lookalike")
    elif kind == "foreign sqlite, our tables, its own mark":
        _foreign(path, app_id=0x12345678, tables="ours")
    else:
        raise AssertionError(kind)
    return path


KINDS = ["random bytes", "text file", "folder", "half-cut index", "cut header", "foreign sqlite",
         "foreign sqlite, WAL", "foreign sqlite, our table names", "foreign sqlite, our tables, its own mark"]


@pytest.mark.parametrize("kind", KINDS)
def test_what_is_not_a_usable_index_is_refused_in_one_line_and_left_untouched(tmp_path, kind):
    path = _make(kind, tmp_path)
    before = _state(path)
    with pytest.raises(ExampleIndexError) as err:
        ExampleIndex(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert err.value.kind == ("damaged" if kind in ("half-cut index", "cut header") else "foreign"), message
    assert _state(path) == before
    if kind.startswith("foreign"):  # its journal mode (header bytes 18-19: 1 rollback, 2 WAL) was never switched
        assert path.read_bytes()[18:20] == (b"\x02\x02" if "WAL" in kind else b"\x01\x01")


@pytest.mark.parametrize("kind", ["random bytes", "folder", "half-cut index", "foreign sqlite"])
@pytest.mark.parametrize("command", ["index", "examples"])
def test_the_cli_says_one_line_and_exits_1_for_a_bad_db(capsys, tmp_path, kind, command):
    photos = tmp_path / "photos"
    photos.mkdir()
    path = _make(kind, tmp_path)
    before = _state(path)
    if command == "index":
        argv = ["index", str(photos), "--model", "googlenet", "--weights", "none", "--db", str(path)]
    else:
        argv = ["examples", "googlenet", "inception3a/2", "3", "--weights", "none", "--db", str(path)]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 1 and out == "", err
    assert err.count("\n") == 1 and err.startswith("inception-explorer: error: ") and str(path) in err, err
    assert _state(path) == before


def test_an_index_of_ours_from_before_the_mark_is_opened_and_marked(tmp_path):
    """An index the previous version wrote (our tables, no application_id) is ours: it is kept and marked."""
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(UNMARKED_SCHEMA)
    con.execute("INSERT INTO files (model, weights, path, size, mtime_ns, ok) VALUES ('m', 'w', '/a.png', 1, 2, 1)")
    con.commit()
    con.close()
    with ExampleIndex(path) as index:
        assert list(index.files("m", "w")) == ["/a.png"]
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == ex.APPLICATION_ID
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


# -- read-only, locked, full ----------------------------------------------------------------------------------

_NO_MODEL = """
import sys
from explorer.core.microscope.examples import ExampleIndex, ExampleIndexError, index_folder
from explorer.core.classify.images import ImageLoadError

class NoModel:  # every image is unreadable: the run only records files, which needs no network
    def eval(self):
        return self

def unreadable(path):
    raise ImageLoadError(path, "unreadable")

db, folder = sys.argv[1:3]
"""


def _run_script(body: str, *args, preexec=None) -> subprocess.CompletedProcess:
    script = textwrap.dedent(_NO_MODEL) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, preexec_fn=preexec, env={**os.environ, "PYTHONPATH": str(REPO)})


def _without_root_file_powers():
    """In the child: give up the capabilities that let root write a file whose mode says read-only, so
    that chmod means for it what it means for everybody else."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone from the bounding set, so after exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _unreadable_files(tmp_path: Path, n: int, name_length: int = 8) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        (folder / f"{i:04d}{'x' * name_length}.png").write_bytes(b"not a png")
    return folder


def test_a_read_only_index_is_read_and_refused_for_writing_in_one_line(tmp_path):
    db = tmp_path / "index.sqlite"
    _fill(db, files=5)
    folder = _unreadable_files(tmp_path, 2)
    db.chmod(0o444)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    if os.geteuid() == 0:
        try:  # the capabilities are dropped in the child only; check here that this kernel allows it
            subprocess.run(["true"], preexec_fn=_without_root_file_powers, check=True)
        except (OSError, subprocess.SubprocessError) as e:
            pytest.skip(f"cannot drop root's file capabilities here: {e}")
    got = _run_script("""
        with ExampleIndex(db) as index:
            print(len(index.files("m", "w")))
            try:
                index_folder(folder, NoModel(), None, unreadable, model="m", weights="w", index=index)
            except ExampleIndexError as e:
                print(e.kind, e)
        """, db, folder, preexec=_without_root_file_powers if os.geteuid() == 0 else None)
    assert got.returncode == 0 and got.stderr == "", got.stderr
    lines = got.stdout.splitlines()
    assert lines[0] == "5"  # still readable
    assert len(lines) == 2 and lines[1].startswith("readonly ") and str(db) in lines[1] and "read-only" in lines[1]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_a_full_disk_is_one_line_and_the_index_keeps_what_it_had(tmp_path):
    """A real failing write: the child may not grow a file past a limit (RLIMIT_FSIZE, with SIGXFSZ ignored so
    that write() fails with EFBIG, as it fails with ENOSPC on a full disk)."""
    db = tmp_path / "index.sqlite"
    _fill(db, files=20)
    folder = _unreadable_files(tmp_path, 300, name_length=150)
    got = _run_script("""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        with ExampleIndex(db) as index:
            try:
                r = index_folder(folder, NoModel(), None, unreadable, model="m", weights="w", index=index)
                print("finished", len(r.failed))
            except ExampleIndexError as e:
                print(e.kind, e)
        """, db, folder)
    assert got.returncode == 0 and got.stderr == "", got.stderr
    assert len(got.stdout.splitlines()) == 1 and got.stdout.split()[0] in ("full", "io"), got.stdout
    assert str(db) in got.stdout and "disk" in got.stdout
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = con.execute("SELECT count(*) FROM files WHERE path LIKE '/photos/%'").fetchone()[0]
    con.close()
    assert kept == 20


def _hold(db: Path, how: str) -> sqlite3.Connection:
    """Another program's connection holding `db`: a write transaction, or exclusive locking (which keeps
    readers out too)."""
    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    if how == "exclusive":
        con.execute("PRAGMA locking_mode=EXCLUSIVE")
        con.execute("BEGIN EXCLUSIVE")
        con.execute("UPDATE files SET note = 'held' WHERE id = 1")
        con.execute("COMMIT")  # in exclusive locking mode the lock stays after the commit
    else:
        con.execute("BEGIN EXCLUSIVE")
    return con


@pytest.mark.parametrize("how", ["write", "exclusive"])
def test_a_locked_index_is_waited_for_with_one_message_then_refused(tmp_path, how):
    db = tmp_path / "index.sqlite"
    _fill(db, files=3)
    folder = _unreadable_files(tmp_path, 1)
    holder = _hold(db, how)
    messages = []
    start = time.monotonic()
    try:
        with pytest.raises(ExampleIndexError) as err:
            with ExampleIndex(db, lock_wait=0.8, on_wait=messages.append) as index:
                index_folder(folder, object(), None, _preprocess, model="m", weights="w", index=index)
    finally:
        holder.close()
    took = time.monotonic() - start
    assert err.value.kind == "locked" and "gave up after 0.8 s" in str(err.value) and str(db) in str(err.value)
    assert len(messages) == 1 and messages[0].startswith(f"waiting for {db}") and "another run" in messages[0]
    assert 0.8 <= took < 5
    with ExampleIndex(db) as index:  # nothing was lost meanwhile
        assert len(index.files("m", "w")) == 3


def test_a_lock_released_in_time_lets_the_run_go_on(tmp_path):
    db = tmp_path / "index.sqlite"
    _fill(db, files=3)
    folder = _unreadable_files(tmp_path, 2)
    holder = _hold(db, "write")
    threading.Timer(0.3, holder.close).start()
    with ExampleIndex(db, lock_wait=10) as index:
        r = index_folder(folder, type("NoModel", (), {"eval": lambda self: self})(), None, _preprocess,
                         model="m", weights="w", index=index)
        assert len(r.failed) == 2 and len(index.files("m", "w")) == 5


def test_the_cli_waits_for_a_locked_index_with_one_line_then_refuses_with_one(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "LOCK_WAIT_S", 0.5)
    db = tmp_path / "index.sqlite"
    _fill(db, files=3)
    folder = _unreadable_files(tmp_path, 1)
    holder = _hold(db, "write")
    try:
        code = main(["index", str(folder), "--model", "googlenet", "--weights", "none", "--db", str(db)])
    finally:
        holder.close()
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if "warning: random weights" not in line]
    assert code == 1 and out == "", err
    assert len(lines) == 2 and lines[0].startswith(f"inception-explorer: waiting for {db}"), err
    assert lines[1].startswith("inception-explorer: error: ") and "gave up" in lines[1], err


# -- two runs at once; one folder named two ways ----------------------------------------------------------------


class _Serial:
    """A CaptureModel shared by two threads, one forward at a time (its hooks keep per-call state)."""

    def __init__(self, cm):
        self.cm, self.lock = cm, threading.Lock()

    def eval(self):
        return self

    def capture(self, x):
        with self.lock:
            return self.cm.capture(x)


def test_two_runs_at_once_leave_no_example_without_its_file(tmp_path, cm):
    """Two runs over one folder into one index, batch for batch in turn (each commits its batch, then waits
    for the other): the second merges into what the first wrote and every example's file row exists."""
    n = 6  # fewer than TOP_K: every channel must list every image exactly once
    folder = _folder(tmp_path, n=n)
    db = tmp_path / "index.sqlite"
    graph = zoo_block_graph("googlenet")
    serial = _Serial(cm)
    started = threading.Barrier(2, timeout=60)
    turn = threading.Barrier(2, timeout=60)
    errors = []

    def run():
        first = []

        def preprocess(path):
            if not first:  # both runs have read what the index knew before either writes
                first.append(path)
                started.wait()
            return _preprocess(path)

        try:
            with ExampleIndex(db) as index:
                index_folder(folder, serial, graph, preprocess, model="googlenet", weights="w", index=index,
                             batch_size=2, progress=lambda done, total: turn.wait())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            started.abort()
            turn.abort()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    con = sqlite3.connect(db)
    orphans = con.execute("SELECT count(*) FROM top WHERE file_id NOT IN (SELECT id FROM files)").fetchone()[0]
    files = con.execute("SELECT count(*) FROM files").fetchone()[0]
    per_channel = set(con.execute("SELECT count(*), count(DISTINCT file_id) FROM top GROUP BY node, branch, channel"))
    con.close()
    assert orphans == 0 and files == n
    assert per_channel == {(n, n)}
    with ExampleIndex(tmp_path / "alone.sqlite") as alone:  # the same values as one run alone
        index_folder(folder, cm, graph, _preprocess, model="googlenet", weights="w", index=alone, batch_size=2)
        with ExampleIndex(db) as both:
            for c in (0, 5, 31):
                got = {e.path: e.value for e in both.examples("googlenet", "w", NODE, BRANCH, c)}
                want = {e.path: e.value for e in alone.examples("googlenet", "w", NODE, BRANCH, c)}
                assert got.keys() == want.keys()
                assert all(got[p] == pytest.approx(want[p], rel=1e-4, abs=1e-5) for p in want)


def test_a_folder_named_relatively_absolutely_or_through_a_link_is_one_folder(tmp_path, cm, monkeypatch):
    folder = _folder(tmp_path, n=3)
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    graph = zoo_block_graph("googlenet")
    with ExampleIndex(tmp_path / "index.sqlite") as index:
        def run(name):
            return index_folder(name, cm, graph, _preprocess, model="googlenet", weights="w", index=index)

        assert run("photos").indexed == 3
        for name in (str(folder), "./photos/../photos", "link"):
            r = run(name)
            assert (r.indexed, r.skipped) == (0, 3), name
        assert sorted(index.files("googlenet", "w")) == [str(folder.resolve() / f"im{i:02d}.png") for i in range(3)]
