"""The class a person types in the target box, found in the model's categories (the window's controls and the
session share the rule)."""

import pytest

from explorer.core.attribution.catalogue import parse_target


@pytest.fixture(scope="module")
def categories():
    from torchvision.models import GoogLeNet_Weights

    return list(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"])


def test_a_typed_class_is_found(categories):
    tabby = categories.index("tabby")
    persian = categories.index("Persian cat")
    assert parse_target("", categories) is None and parse_target("Top-1 (tabby)", categories) is None
    assert parse_target(str(tabby), categories) == tabby
    assert parse_target(f"{tabby}: tabby", categories) == tabby
    assert parse_target("TABBY", categories) == tabby  # a class's name, in any case
    assert parse_target("persian", categories) == persian  # a piece of exactly one class
    # "tabby" is also a piece of no other class, but "cat" of many: refused, not guessed.
    assert sum("cat" in f"{i}: {c}".lower() for i, c in enumerate(categories)) > 1
    with pytest.raises(ValueError, match="no single class"):
        parse_target("cat", categories)
    with pytest.raises(ValueError):
        parse_target("no such thing", categories)
    with pytest.raises(ValueError):  # an index past the last class names none
        parse_target(str(len(categories)), categories)
