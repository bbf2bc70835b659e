"""Before the window: can Qt's X11 platform plugin load here? If not, say in one line what to install.

Without its system libraries (libxcb-cursor0 and friends are missing from a fresh Debian/Ubuntu) Qt
aborts the process with "Could not load the Qt platform plugin "xcb" … This application failed to
start because no Qt platform plugin could be initialized", which names neither library nor package.
This module imports no Qt, so that it can run before PySide6's libraries are loaded.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: The system libraries that PySide6's libqxcb.so and libQt6XcbQpa.so.6 (and QtGui) load, from
#: `ldd`, with the Debian/Ubuntu package that ships each. Qt's own libraries come with PySide6.
XCB_LIBRARIES = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libz.so.1": "zlib1g",
    "libdbus-1.so.3": "libdbus-1-3",
}


def missing_libraries() -> list[str]:
    """The XCB_LIBRARIES that the dynamic loader cannot find, in table order."""
    missing = []
    for soname in XCB_LIBRARIES:
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(soname)
    return missing


def uses_xcb(environ=os.environ, platform: str = sys.platform) -> bool:
    """Whether Qt will pick its X11 (xcb) platform plugin: Linux, no other platform asked for, no Wayland."""
    if not platform.startswith("linux"):
        return False
    asked = environ.get("QT_QPA_PLATFORM", "")
    if asked:
        return asked.split(";")[0].split(":")[0] == "xcb"
    return not (environ.get("WAYLAND_DISPLAY") and environ.get("XDG_SESSION_TYPE") == "wayland")


def platform_problem(environ=os.environ, platform: str = sys.platform) -> str | None:
    """One line saying why the window cannot open here and what to install, or None when it can."""
    if not uses_xcb(environ, platform):
        return None
    missing = missing_libraries()
    if missing:
        packages = " ".join(dict.fromkeys(XCB_LIBRARIES[m] for m in missing))
        return (f"inception-explorer: the window needs system libraries that are missing ({', '.join(missing)});"
                f" on Debian/Ubuntu install them with: sudo apt install {packages}")
    if not environ.get("DISPLAY"):
        return ("inception-explorer: no X display to open the window on (DISPLAY is not set);"
                " run it in a desktop session, or use the command line: inception-explorer --help")
    return None
