"""The one number style a person reads, checked on rendered strings: every percent is 'N.N %' or 'N %'."""

from __future__ import annotations

import re

#: Any number followed by a percent sign, however written.
_ANY_PERCENT = re.compile(r"[-+]?\d[\d.,]*\s*%")
#: The one style (explorer.core.text.fmt_fraction): digits, at most one decimal, a space, the sign.
_ONE_STYLE = re.compile(r"[-+]?\d+(\.\d)? %")


def percents(text: str) -> list[str]:
    """Every percent written in `text`."""
    return _ANY_PERCENT.findall(text)


def assert_one_percent_style(*texts: str) -> int:
    """Fail on a percent in another style ('12.34%', '12.3%', '0.1%'); returns how many were checked."""
    found = [p for t in texts for p in percents(t)]
    wrong = [p for p in found if not _ONE_STYLE.fullmatch(p)]
    assert not wrong, f"percents not in the one style ('12.3 %'): {wrong}"
    return len(found)
