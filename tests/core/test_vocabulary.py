"""One vocabulary: percents, multiply-adds and units come from explorer.core.text, nowhere else."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

import explorer
from explorer.core.text import branch_number, fmt_branch, fmt_fraction
from tests.vocabulary import assert_one_percent_style

SOURCES = sorted(p for p in Path(explorer.__file__).parent.rglob("*.py") if p.name != "text.py")
#: Python's own percent formats ('{p:.1%}', '{p * 100:.1f}%'): each makes its own style.
PRIVATE_PERCENT = re.compile(r"\{[^{}\n]*:[^{}\n]*%\}|\{[^{}\n]*\}%")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(Path(explorer.__file__).parent)))
def test_no_module_formats_its_own_percent(path):
    text = path.read_text(encoding="utf-8")
    assert not PRIVATE_PERCENT.findall(text), f"{path.name}: a percent made outside explorer.core.text.fmt_fraction"
    strings = [t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.STRING]
    said = [s for s in strings if re.search(r"\bMACs?\b", s) and not s.lstrip("rbfu").startswith(('"""', "'''"))]
    assert not said, f"{path.name}: 'MACs' in {said} — say multiply-adds (short: mult-adds)"
    # A branch a person reads is its 1-based number, made in one place (fmt_branch); code says branch_index.
    numbered = [s for s in strings if re.search(r"\bbranch \{", s)]
    assert not numbered, f"{path.name}: {numbered} — a branch is numbered by explorer.core.text.fmt_branch"


def test_branches_are_numbered_from_1_for_people():
    assert (branch_number(0), fmt_branch(1), fmt_branch(1, "#3×3 reduce → #3×3")) == (
        1, "branch 2", "branch 2 (#3×3 reduce → #3×3)")


def test_the_one_style_itself():
    assert assert_one_percent_style(fmt_fraction(0.4123), fmt_fraction(1), fmt_fraction(0.4, 0)) == 3
    for wrong in ("12.34%", "12.3%", "0.1%", "41.23 %"):
        with pytest.raises(AssertionError):
            assert_one_percent_style(wrong)
