"""The handout against hostile outputs: a full disk over an older PDF, `-o` naming an input, `-o -`, a FIFO as
the image, Ctrl-C while drawing, and a full disk under the window's export. Each ends in one line with the
older file as it was and nothing half-written. A full disk is the kernel's own refusal: RLIMIT_FSIZE makes
writes past a size fail with EFBIG (Python ignores SIGXFSZ) for the length of a block."""

from __future__ import annotations

import io
import os
import signal

import numpy as np
import pytest
from PIL import Image

pypdf = pytest.importorskip("pypdf")

from explorer.cli import main  # noqa: E402
from tests.netutil import disk_full_after  # noqa: E402

BASE = ["handout", "googlenet", "--weights", "none", "--size", "64"]
OLDER = b"%PDF-1.4 an older handout, to be kept\n%%EOF\n"


def run(capsys, *args):
    try:
        code = main([*map(str, args)])
    except KeyboardInterrupt:  # escaping main would end the whole test session
        pytest.fail("KeyboardInterrupt escaped main()")
    return code, capsys.readouterr()


def errors(err) -> list[str]:
    return [line for line in (err.decode() if isinstance(err, bytes) else err).splitlines()
            if not line.startswith("inception-explorer: warning:")]


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


def test_a_full_disk_keeps_the_older_pdf(tmp_path, capsys):
    # Old behaviour: exit 0, "wrote …", a truncated PDF in place of the older one.
    out = tmp_path / "h.pdf"
    out.write_bytes(OLDER)
    with disk_full_after(20_000):  # the handout is some 100 kB
        code, cap = run(capsys, *BASE, "-o", out)
    assert code == 1 and "Traceback" not in cap.err
    assert errors(cap.err) == [f"inception-explorer: error: cannot write {out}: file too large (the file system's or "
                               "the process's file-size limit)"]
    assert out.read_bytes() == OLDER and [p.name for p in tmp_path.iterdir()] == ["h.pdf"]


@pytest.mark.parametrize("spelling", ["same", "other spelling", "hard link"])
def test_output_naming_an_input_is_refused(tmp_path, capsys, photo, spelling):
    # Old behaviour: the photo overwritten by the PDF without a word.
    before = photo.read_bytes()
    target = {"same": photo, "other spelling": tmp_path / "sub" / ".." / photo.name, "hard link": tmp_path / "h.pdf"}
    if spelling == "other spelling":
        (tmp_path / "sub").mkdir()
    if spelling == "hard link":
        os.link(photo, target["hard link"])
    code, cap = run(capsys, *BASE, "--image", photo, "-o", target[spelling])
    assert code == 2 and "Traceback" not in cap.err
    assert errors(cap.err) == [f"inception-explorer: error: -o {target[spelling]}: it is one of the inputs; "
                               "not overwritten"]
    assert photo.read_bytes() == before


def test_output_dash_is_stdout(tmp_path, capsysbinary, monkeypatch):
    # Old behaviour: a file named "-".
    monkeypatch.chdir(tmp_path)
    code = main([*BASE, "-o", "-"])
    cap = capsysbinary.readouterr()
    assert code == 0, cap.err
    assert cap.out.startswith(b"%PDF-") and cap.out.rstrip().endswith(b"%%EOF")
    assert len(pypdf.PdfReader(io.BytesIO(cap.out)).pages) >= 3
    assert list(tmp_path.iterdir()) == []


def test_a_fifo_as_the_image_is_named_as_such(tmp_path, capsys):
    # Old behaviour: "no such file".
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    code, cap = run(capsys, *BASE, "--image", fifo, "-o", tmp_path / "h.pdf")
    assert code == 1
    assert errors(cap.err) == [f"inception-explorer: error: --image {fifo}: is a FIFO (named pipe), not a regular "
                               "file; only regular files are read"]
    assert not (tmp_path / "h.pdf").exists()


def test_ctrl_c_while_drawing_keeps_the_older_pdf(tmp_path, capsys, monkeypatch):
    # Old behaviour: a KeyboardInterrupt traceback.
    from explorer.qt.lecture import handout_pdf

    real, calls = handout_pdf._section, []

    def section_then_ctrl_c(pg, section, drawings):
        calls.append(section.title)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        real(pg, section, drawings)

    monkeypatch.setattr(handout_pdf, "_section", section_then_ctrl_c)
    out = tmp_path / "h.pdf"
    out.write_bytes(OLDER)
    code, cap = run(capsys, *BASE, "-o", out)
    assert code == 130 and errors(cap.err) == ["inception-explorer: interrupted"]
    assert out.read_bytes() == OLDER and [p.name for p in tmp_path.iterdir()] == ["h.pdf"]


def test_the_window_reports_a_full_disk_and_keeps_the_older_pdf(make_window, qtbot, tmp_path):
    # Old behaviour: "wrote handout", a truncated PDF over the older one.
    window = make_window()
    window.graph_page.set_input_size(64)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "window.pdf"
    out.write_bytes(OLDER)
    written, failed = [], []
    with disk_full_after(20_000):
        assert window.exports.export_handout(out) is True
        exp = window.exports.handout_export
        exp.written.connect(written.append)
        exp.failed.connect(failed.append)
        qtbot.waitUntil(lambda: bool(written or failed), timeout=60_000)
    assert len(failed) == 1 and failed[0].startswith(f"handout failed: cannot write {out}: file too large"), written
    assert "cannot write" in window.banner.text() and written == []
    assert out.read_bytes() == OLDER and [p.name for p in out.parent.iterdir()] == ["window.pdf"]
