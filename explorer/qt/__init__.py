"""Every Qt widget, view and worker of Inception Explorer lives in this package.

PySide6 is pinned below 6.12: 6.12.0 under Python 3.11 drops a reference to None on every call of
a void C++ method, and CPython aborts ("none_dealloc") after a few thousand paint calls.
"""
