"""PySide6 itself: the pinned version does not leak references on void calls."""

import sys


def test_pyside_void_calls_do_not_exhaust_none():
    from PySide6.QtCore import QPointF

    p = QPointF()
    for _ in range(200_000):
        p.setX(1.0)
    assert sys.getrefcount(None) > 1000
