"""explorer.qt.bind: a control bound to a state property by name shows it and writes the person's edits, both ways,
without echoes; a dataclass field is reached by "property.field"."""

from dataclasses import dataclass

import pytest
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QCheckBox, QComboBox, QLineEdit, QSpinBox

from explorer.core.session.state import State, StateProperty
from explorer.qt.bind import bind


@dataclass(frozen=True)
class Params:
    steps: int = 50
    baseline: str = "black"


class Choices(State):
    steps = StateProperty(7)
    on = StateProperty(False)
    name = StateProperty("a")
    params = StateProperty(Params())


def announcements(state, name):
    heard = []
    state.connect(name, heard.append)
    return heard


def test_a_spin_box_and_a_property(qtbot):
    st, box = Choices(), QSpinBox(maximum=100)
    qtbot.addWidget(box)
    bind(box, st, "steps")
    assert box.value() == 7  # shown at once
    heard = announcements(st, "steps")
    box.setValue(12)  # the person's edit
    assert st.steps == 12 and heard == [12]
    edits = []
    box.valueChanged.connect(edits.append)
    st.steps = 30  # the state's change reaches the box, which writes nothing back
    assert box.value() == 30 and heard == [12, 30] and edits == []


def test_a_field_of_a_dataclass_property(qtbot):
    st, combo = Choices(), QComboBox()
    qtbot.addWidget(combo)
    for label, key in (("Black", "black"), ("Blurred", "blur")):
        combo.addItem(label, key)
    bind(combo, st, "params.baseline")
    heard = announcements(st, "params")
    combo.setCurrentIndex(1)
    assert st.params == Params(50, "blur") and len(heard) == 1  # replaced whole, announced once
    st.params = Params(10, "black")
    assert combo.currentData() == "black"
    with pytest.raises(ValueError):
        bind(QSpinBox(), st, "params.steps.real")


def test_buttons_actions_and_text(qtbot):
    st, check, edit = Choices(), QCheckBox(), QLineEdit()
    action = QAction("on", None, checkable=True)
    for w in (check, edit):
        qtbot.addWidget(w)
    bind(check, st, "on")
    bind(action, st, "on")
    bind(edit, st, "name")
    check.setChecked(True)
    assert st.on is True and action.isChecked()  # one control's edit shows in the other
    qtbot.keyClicks(edit, "bc")
    assert st.name == "abc"
    st.name = "z"
    assert edit.text() == "z"


def test_a_deleted_control_leaves_the_state_working(qtbot):
    st, box = Choices(), QSpinBox()
    bind(box, st, "steps")
    box.deleteLater()
    qtbot.waitUntil(lambda: not st._callbacks.get("steps"), timeout=2000)
    st.steps = 3  # no call into the deleted box
    assert st.steps == 3
