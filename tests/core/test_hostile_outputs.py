"""Hostile outputs: a full disk, a folder where a file goes, an output folder inside a file or without write
permission, names over 255 bytes, a cache folder that is a file, stdout on a full device, Ctrl-C.

Each ends in one line per failure, the rest of a batch still done, no partial file, any older file as it
was, and exit 1 (130 for Ctrl-C). A full disk is the kernel's own refusal: RLIMIT_FSIZE makes writes past
a size fail with EFBIG (Python ignores SIGXFSZ), in this process for a short block or in a subprocess.
The tests run as root, for whom a folder's permissions do not refuse a write: "without write permission"
runs the command with the effective user `nobody`, and "a folder inside a file" fails for root too.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer.cli import main
from tests.netutil import disk_full_after

ROOT = Path(__file__).resolve().parents[2]
MODEL = ["--model", "googlenet", "--weights", "none", "--device", "cpu"]


def noise_png(path: Path, seed: int) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return [noise_png(folder / f"{c}.png", i) for i, c in enumerate("ab")]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INCEPTION_EXPLORER_CACHE", str(tmp_path / "cache"))


def run(capsys, *args):
    try:
        code = main([*map(str, args)])
    except KeyboardInterrupt:  # escaping main would end the whole test session
        pytest.fail("KeyboardInterrupt escaped main()")
    out, err = capsys.readouterr()
    return code, out, err


def lines(err: str) -> list[str]:
    """stderr without the warnings and notes every run with random weights prints."""
    return [line for line in err.splitlines() if not line.startswith(("inception-explorer: warning:",
                                                                       "inception-explorer: note:"))]


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith((".part", ".tmp"))]


# ---------------------------------------------------------------- attribute


def test_attribute_on_a_full_disk_reports_each_map_and_keeps_the_older_file(capsys, tmp_path, images):
    # Old behaviour: a traceback at the first map, a truncated .npy left, the second image never processed.
    out = tmp_path / "out"
    out.mkdir()
    older = out / "a.saliency.npy"
    older.write_bytes(b"an older map")
    with disk_full_after(50_000):  # a map's .npy is 200,832 bytes
        code, stdout, err = run(capsys, "attribute", *images, *MODEL, "--method", "saliency", "-o", out)
    assert code == 1 and "Traceback" not in err
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in images]  # the whole batch, without files
    assert all("png" not in r and "npy" not in r for r in records)
    errors = lines(err)
    assert len(errors) == 2, err
    for line, name in zip(errors, ("a", "b")):
        assert line.startswith(f"inception-explorer: cannot write {out / name}.saliency.") and "too large" in line
    assert sorted(p.name for p in out.iterdir()) == ["a.saliency.npy"] and older.read_bytes() == b"an older map"


def test_attribute_names_taken_by_folders_and_over_255_bytes(capsys, tmp_path):
    # Old behaviour: IsADirectoryError for the taken name, "File name too long" for the long one: tracebacks.
    folder = tmp_path / "in"
    folder.mkdir()
    long_a = "é" * 122 + "-first"  # 250 bytes: the input's own name fits, its maps' names would not
    long_b = "é" * 122 + "-second"
    inputs = [noise_png(folder / f"{stem}.png", i) for i, stem in enumerate(["taken", long_a, long_b])]
    out = tmp_path / "out"
    (out / "taken.saliency.png").mkdir(parents=True)
    code, stdout, err = run(capsys, "attribute", *inputs, *MODEL, "--method", "saliency", "-o", out)
    assert code == 1 and "Traceback" not in err
    errors = lines(err)
    assert errors == [f"inception-explorer: cannot write {out / 'taken.saliency.png'}: a folder of that name is "
                      "in the way"]
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in inputs]
    assert "png" not in records[0] and not (out / "taken.saliency.npy").exists()
    reported = set()
    for r, stem in zip(records[1:], (long_a, long_b)):
        for key in ("png", "npy"):
            name = Path(r[key]).name
            assert len(os.fsencode(name)) <= 255 and name.startswith("é" * 100) and "~" in name, name
            reported.add(name)
        assert Path(r["png"]).stem == Path(r["npy"]).stem  # the two files of a map share one name
        assert np.load(r["npy"]).shape == (224, 224)
        with Image.open(r["png"]) as im:
            assert im.size == (224, 224)
    assert len(reported) == 4  # two long names that share their start stay apart
    assert {p.name for p in out.iterdir()} == reported | {"taken.saliency.png"} and not leftovers(out)
    # The same input gives the same shortened name on another run.
    code, stdout2, _ = run(capsys, "attribute", inputs[1], *MODEL, "--method", "saliency", "-o", tmp_path / "again")
    assert code == 0 and Path(json.loads(stdout2)["npy"]).name == Path(records[1]["npy"]).name


def test_a_map_is_never_written_over_an_input(capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    photo = noise_png(folder / "x.png", 1)
    victim = noise_png(folder / "x.saliency.png", 2)  # an input, and the name x.png's map would take
    before = victim.read_bytes()
    code, stdout, err = run(capsys, "attribute", photo, victim, *MODEL, "--method", "saliency", "-o", folder)
    assert code == 1 and "Traceback" not in err
    assert lines(err) == [f"inception-explorer: cannot write {victim}: it is one of the inputs; not overwritten"]
    assert victim.read_bytes() == before and not (folder / "x.saliency.npy").exists()
    assert len(stdout.splitlines()) == 2


@pytest.mark.parametrize("command", ["attribute", "visualize"])
def test_an_output_folder_inside_a_file_is_one_line(capsys, tmp_path, images, command):
    # Old behaviour: NotADirectoryError from mkdir, a traceback.
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    out = tmp_path / "notes.txt" / "maps"
    args = ([command, images[0], *MODEL, "--method", "saliency"] if command == "attribute" else
            [command, "googlenet", "inception3a/2", "--channels", "0", "--steps", "1", "--size", "32",
             "--weights", "none"])
    code, stdout, err = run(capsys, *args, "-o", out)
    assert code == 1 and "Traceback" not in err and stdout == ""
    assert lines(err) == [f"inception-explorer: error: cannot create the folder {out}: a part of the path is a "
                          "file, not a folder"]


@pytest.mark.parametrize("command", ["attribute", "visualize", "examples"])
def test_output_dash_for_a_folder_is_refused(capsys, tmp_path, monkeypatch, images, command):
    # Old behaviour: a folder named "-" in the working folder, the maps written into it.
    monkeypatch.chdir(tmp_path)
    args = {"attribute": ["attribute", images[0], *MODEL, "--method", "saliency"],
            "visualize": ["visualize", "googlenet", "inception3a/2", "--channels", "0", "--steps", "1", "--size", "32",
                          "--weights", "none"],
            "examples": ["examples", "googlenet", "inception4a/2", "3", "--weights", "none"]}[command]
    code, stdout, err = run(capsys, *args, "-o", "-")
    assert code == 2 and stdout == "" and not (tmp_path / "-").exists()
    assert lines(err) == ["inception-explorer: error: -o -: this command writes image files, which need a folder; "
                          "give -o FOLDER"]


# ---------------------------------------------------------------- visualize and its cache


PNGS = [f"inception3a-2-ch00{c}.png" for c in range(3)]
CACHE_NOTE = "inception-explorer: note: the feature-visualisation cache is not kept"


def _visualize(capsys, out, *extra):
    return run(capsys, "visualize", "googlenet", "inception3a/2", "--channels", "0-2", "--batch", "1", "--steps", "1",
               "--size", "32", "--weights", "none", "-o", out, *extra)


def test_a_cache_folder_that_is_a_file_is_one_note(capsys, tmp_path, monkeypatch):
    # Old behaviour: FileExistsError/NotADirectoryError from the cache's mkdir, no image written.
    cache = tmp_path / "cache-file"
    cache.write_text("not a folder")
    monkeypatch.setenv("INCEPTION_EXPLORER_CACHE", str(cache))
    code, stdout, err = _visualize(capsys, tmp_path / "out")
    assert code == 0 and "Traceback" not in err
    assert len(stdout.splitlines()) == 3 and len(list((tmp_path / "out").iterdir())) == 3
    notes = [line for line in err.splitlines() if CACHE_NOTE in line]
    assert len(notes) == 1 and str(cache) in notes[0]
    assert cache.read_text() == "not a folder"


def test_visualize_on_a_full_disk(capsys, tmp_path):
    # Old behaviour: a traceback from the cache (its half-written .tmp left) before any image was written.
    out = tmp_path / "out"
    with disk_full_after(1000):  # each 32×32 image is a few kB
        code, stdout, err = _visualize(capsys, out)
    assert code == 1 and "Traceback" not in err and stdout == ""
    expected = [f"inception-explorer: cannot write {out / name}: file too large" for name in PNGS]
    assert [line[: len(e)] for line, e in zip(lines(err), expected)] == expected and len(lines(err)) == 3, err
    assert len([line for line in err.splitlines() if CACHE_NOTE in line]) == 1
    assert list(out.iterdir()) == [] and not leftovers(tmp_path / "cache")


@contextlib.contextmanager
def as_nobody():
    """Run the block with the effective user `nobody`, for whom folder permissions hold (root ignores them)."""
    if os.geteuid() != 0:
        yield
        return
    nobody = pwd.getpwnam("nobody").pw_uid
    try:
        os.seteuid(nobody)
    except PermissionError:
        pytest.skip("cannot take another user's identity here")
    try:
        yield
    finally:
        os.seteuid(0)


def test_visualize_without_write_permission(capsys, monkeypatch):
    # Old behaviour: PermissionError from the cache's mkdir, a traceback.
    base = Path(tempfile.mkdtemp(prefix="hostile-outputs-"))  # pytest's tmp_path is closed to other users
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        monkeypatch.setenv("INCEPTION_EXPLORER_CACHE", str(locked / "cache"))
        with as_nobody():
            code, stdout, err = _visualize(capsys, locked)
        assert code == 1 and "Traceback" not in err and stdout == ""
        assert lines(err) == [f"inception-explorer: cannot write {locked / name}: permission denied" for name in PNGS]
        notes = [line for line in err.splitlines() if CACHE_NOTE in line]
        assert len(notes) == 1 and notes[0].endswith("permission denied")
        assert list(locked.iterdir()) == []
    finally:
        (base / "locked").chmod(0o755)
        for p in sorted(base.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        base.rmdir()


def test_ctrl_c_while_a_file_lands_keeps_it_with_its_line(capsys, tmp_path, monkeypatch):
    # Old behaviour: Ctrl-C between a file written and its line printed left a file no line reports; a
    # traceback. Here SIGINT arrives during the rename of the first image: the image and its line stay
    # together, then the run ends with one line and 130.
    monkeypatch.setenv("INCEPTION_EXPLORER_CACHE", str(tmp_path / "no-cache"))
    (tmp_path / "no-cache").write_text("the cache is off: only the outputs are renamed")
    real = os.replace

    def replace_then_ctrl_c(*args, **kw):
        real(*args, **kw)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace_then_ctrl_c)
    out = tmp_path / "out"
    code, stdout, err = _visualize(capsys, out)
    monkeypatch.setattr(os, "replace", real)
    assert code == 130 and "Traceback" not in err
    assert lines(err) == ["inception-explorer: interrupted"]
    assert [line.split("\t")[0] for line in stdout.splitlines()] == [str(out / PNGS[0])]
    assert [p.name for p in out.iterdir()] == [PNGS[0]]


def test_ctrl_c_in_a_py_build_is_one_line(capsys, tmp_path):
    model = tmp_path / "slow_net.py"
    model.write_text("import signal\n\n\ndef build():\n    signal.raise_signal(signal.SIGINT)  # Ctrl-C mid-build\n")
    code, stdout, err = run(capsys, "trace", model)
    assert code == 130 and lines(err) == ["inception-explorer: interrupted"] and stdout == ""
    assert "Traceback" not in err


# ---------------------------------------------------------------- examples -o


@pytest.fixture
def indexed(capsys, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        noise_png(folder / f"p{i}.png", i)
    db = tmp_path / "index.sqlite"
    code, _, err = run(capsys, "index", folder, "--model", "googlenet", "--weights", "none", "--db", db)
    assert code == 0, err
    return db


def test_examples_crops_a_folder_in_the_way_and_a_folder_inside_a_file(capsys, tmp_path, indexed):
    # Old behaviour: IsADirectoryError and NotADirectoryError tracebacks.
    base = ["examples", "googlenet", "inception4a/2", "3", "--weights", "none", "--db", indexed, "--format", "jsonl"]
    out = tmp_path / "crops"
    (out / "inception4a-2-ch003-ex1.png").mkdir(parents=True)
    code, stdout, err = run(capsys, *base, "-o", out)
    assert code == 1 and "Traceback" not in err
    assert lines(err) == [f"inception-explorer: cannot write {out / 'inception4a-2-ch003-ex1.png'}: a folder of "
                          "that name is in the way"]
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [r["rank"] for r in records] == [1, 2] and "crop" not in records[0]
    assert {p.name for p in out.iterdir()} == {"inception4a-2-ch003-ex1.png", Path(records[1]["crop"]).name}
    with Image.open(records[1]["crop"]) as im:
        im.load()

    (tmp_path / "file").write_text("x")
    code, stdout, err = run(capsys, *base, "-o", tmp_path / "file" / "crops")
    assert code == 1 and stdout == "" and "Traceback" not in err
    assert lines(err) == [f"inception-explorer: error: cannot create the folder {tmp_path / 'file' / 'crops'}: a part "
                          "of the path is a file, not a folder"]


# ---------------------------------------------------------------- stdout on a full device


@pytest.mark.parametrize("command", ["models", "trace", "classify", "attribute"])
def test_stdout_on_a_full_device_is_one_line(capsys, monkeypatch, images, command):
    # Old behaviour: OSError [Errno 28] from print, a traceback (or, for a short output, exit 0 and the
    # error left to Python's flush at exit).
    args = {"models": ["models"], "trace": ["trace", "googlenet", "--size", "64"],
            "classify": ["classify", images[0], *MODEL],
            "attribute": ["attribute", images[0], *MODEL, "--method", "saliency"]}[command]
    full = open("/dev/full", "w")
    try:
        with monkeypatch.context() as m:
            m.setattr(sys, "stdout", full)
            code, _, err = run(capsys, *args)
    finally:
        with contextlib.suppress(OSError):
            full.close()
    assert code == 1 and "Traceback" not in err
    assert lines(err) == ["inception-explorer: error: cannot write to stdout: no space left on the device"]


def test_stdout_on_a_full_device_exits_quietly():
    # The whole process: no "Exception ignored …" from Python's flush at exit.
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "explorer", "models"], stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1
    assert r.stderr == "inception-explorer: error: cannot write to stdout: no space left on the device\n"


# ---------------------------------------------------------------- Ctrl-C, for real


def _sigint_default():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell may have ignored it; Python then would too


def test_ctrl_c_during_attribute_leaves_only_reported_maps(tmp_path):
    # Old behaviour: a KeyboardInterrupt traceback, killed by the signal; once a map no line reported.
    folder = tmp_path / "in"
    folder.mkdir()
    inputs = [noise_png(folder / f"{i}.png", i) for i in range(6)]
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "explorer", "attribute", *map(str, inputs), *MODEL,
                             "--method", "saliency,grad_cam", "-o", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, preexec_fn=_sigint_default)
    timer = threading.Timer(240, proc.kill)
    timer.start()
    try:
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate()
    finally:
        timer.cancel()
        proc.kill()
    assert first, err
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert lines(err) == ["inception-explorer: interrupted"]
    records = [json.loads(line) for line in (first + rest).splitlines()]
    assert 1 <= len(records) < 12
    reported = {Path(r[k]).name for r in records for k in ("png", "npy")}
    assert {p.name for p in out.iterdir()} == reported  # every file reported, none half-written
    for r in records:
        assert np.load(out / Path(r["npy"]).name).shape == (224, 224)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_written_file_has_the_mode_the_umask_gives_not_the_temporary_files(tmp_path, mask):
    """The temporary file is private (0600) while it is written; the file in place reads as any new file would."""
    from explorer.core.outputs import write_file

    old = os.umask(mask)
    try:
        path = write_file(tmp_path / "handout.pdf", b"%PDF-1.4\n%%EOF\n") or tmp_path / "handout.pdf"
    finally:
        os.umask(old)
    assert (os.stat(path).st_mode & 0o777) == 0o666 & ~mask
