"""Controls bound to a state by name, both ways, without signal loops (glue's and napari's way: the widgets are a
skin over the state).

`bind(control, state, "curve_steps")` shows `state.curve_steps` in the control and writes the person's edits to
it; `bind(control, state, "params.ig_steps")` reaches one field of a frozen dataclass property (the field is
replaced, `dataclasses.replace`, and the property announced once). The state is an explorer.core.session.state
`State`: its announcements come back to the control, which is set with its signals blocked, so nothing echoes.

Controls: QSpinBox and QDoubleSpinBox (value), QComboBox (an item's data), a checkable QAbstractButton or
QAction (checked), QLineEdit (text).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import QSignalBlocker
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit


def _access(control):
    """(signal, read(), show(value)) of `control`."""
    if isinstance(control, QComboBox):
        return control.currentIndexChanged, control.currentData, \
            lambda v: control.setCurrentIndex(max(0, control.findData(v)))
    if isinstance(control, QAbstractSpinBox):
        return control.valueChanged, control.value, control.setValue
    if isinstance(control, (QAbstractButton, QAction)):
        return control.toggled, control.isChecked, control.setChecked
    if isinstance(control, QLineEdit):
        return control.textEdited, control.text, control.setText
    raise TypeError(f"cannot bind a {type(control).__name__}")


def _get(state, path: list[str]) -> Any:
    value = getattr(state, path[0])
    for name in path[1:]:
        value = getattr(value, name)
    return value


def _set(state, path: list[str], value) -> None:
    if len(path) == 1:
        setattr(state, path[0], value)
        return
    outer = getattr(state, path[0])
    setattr(state, path[0], dataclasses.replace(outer, **{path[1]: value}))


def bind(control, state, name: str) -> None:
    """Show `state.<name>` in `control` now and whenever it changes; write the person's edits to it. `name` is a
    property of `state`, or "property.field" for a field of a dataclass property."""
    path = name.split(".")
    if len(path) > 2:
        raise ValueError(f"bind reaches one field deep, not {name!r}")
    signal, read, show = _access(control)

    def to_control(_value=None) -> None:
        value = _get(state, path)
        if read() != value:
            with QSignalBlocker(control):
                show(value)

    def to_state(*_) -> None:
        if read() != _get(state, path):
            _set(state, path, read())

    to_control()
    signal.connect(to_state)
    state.connect(path[0], to_control)
    control.destroyed.connect(lambda *_: state.disconnect(path[0], to_control))  # the state may outlive it
