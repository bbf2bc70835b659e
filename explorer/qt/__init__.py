"""Every Qt widget, view and worker of Inception Explorer lives in this package."""

import sys


def _guard_none_refcount() -> bool:
    """Work around PySide6 6.12 on Python < 3.12: every call of a void C++ method drops one
    reference to None without taking it (None is immortal from 3.12 on, so the bindings skip the
    Py_INCREF). A few thousand paint calls later CPython aborts with "none_dealloc". We detect
    the leak with a harmless void call and, if present, give None the effectively infinite
    reference count it has on 3.12+. Returns whether the guard was applied.
    """
    if sys.version_info >= (3, 12):
        return False
    try:
        from PySide6.QtCore import QPointF
    except ImportError:  # the Qt-free parts (layout) still import without Qt
        return False

    p = QPointF()
    before = sys.getrefcount(None)
    for _ in range(8):
        p.setX(1.0)
    if sys.getrefcount(None) >= before:
        return False
    import ctypes

    # ob_refcnt is the first field of every PyObject; None is never freed, so this only emulates
    # the immortality the bindings assume.
    ctypes.c_ssize_t.from_address(id(None)).value += 1 << 50
    return True


NONE_REFCOUNT_GUARDED = _guard_none_refcount()
