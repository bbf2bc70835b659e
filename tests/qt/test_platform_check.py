"""A fresh Linux machine without the X11 libraries Qt needs: one line naming the packages, no Qt abort."""

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import explorer.qt.platform_check as platform_check
from explorer.launcher import main

#: Libraries every Linux process has (glibc, the C++ runtime): never the missing piece.
BASE = re.compile(r"^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux.*)\.so")


def pretend_missing(monkeypatch, *missing: str) -> None:
    """The dynamic loader cannot find `missing` (the probe itself runs unchanged)."""
    real = ctypes.CDLL

    def cdll(name, *args, **kwargs):
        if name in missing:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(platform_check.ctypes, "CDLL", cdll)


@pytest.fixture
def x11_session(monkeypatch):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(platform_check.sys, "platform", "linux")


def test_missing_xcb_cursor_is_one_line_naming_the_package(x11_session, monkeypatch, capsys):
    pretend_missing(monkeypatch, "libxcb-cursor.so.0")

    def no_qt(*args, **kwargs):
        raise AssertionError("the window was started")

    monkeypatch.setattr("explorer.qt.app.main", no_qt)
    assert main(["gui"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert "libxcb-cursor.so.0" in err and "sudo apt install libxcb-cursor0" in err


def test_every_missing_library_is_named_once(x11_session, monkeypatch):
    pretend_missing(monkeypatch, "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0")
    line = platform_check.platform_problem()
    assert line.endswith("sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1")


def test_other_platforms_are_left_to_qt(monkeypatch):
    pretend_missing(monkeypatch, *platform_check.XCB_LIBRARIES)
    assert platform_check.platform_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert platform_check.platform_problem({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"},
                                           "linux") is None
    assert platform_check.platform_problem({}, "darwin") is None
    assert platform_check.platform_problem({"QT_QPA_PLATFORM": "xcb:display=:1"}, "linux") is not None


def test_no_display_is_one_line_too(monkeypatch):
    line = platform_check.platform_problem({}, "linux")
    assert line is not None and "DISPLAY is not set" in line and "\n" not in line


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf")
def test_the_table_covers_every_system_library_the_xcb_plugin_needs():
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    needed = set()
    for lib in (qt / "plugins/platforms/libqxcb.so", qt / "lib/libQt6XcbQpa.so.6", qt / "lib/libQt6Gui.so.6"):
        dynamic = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic))
    system = {n for n in needed if not n.startswith(("libQt6", "libicu")) and not BASE.match(n)}
    assert "libxcb-cursor.so.0" in system
    assert system <= set(platform_check.XCB_LIBRARIES), system - set(platform_check.XCB_LIBRARIES)


def test_the_readme_names_every_package_on_one_line():
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8").splitlines()
    lines = [m.group(1) for line in readme if (m := re.search(r"`sudo apt install ([^`]+)`", line))]
    assert len(lines) == 1
    assert set(platform_check.XCB_LIBRARIES.values()) <= set(lines[0].split())
