"""The sample photographs shipped in `resources/samples/`, with the credit and licence of each.

The folder is the truth for which images exist; `resources/samples/LICENSE.md` says, per file, who
took it and under which licence (a `## <file name>` section with `Credit:` and `Licence:` lines). An
image without such a section is still listed, with `credit`/`licence` None, so that a test catches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parents[3] / "resources" / "samples"
LICENCE_FILE = "LICENSE.md"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SampleImage:
    """One sample photograph and where it comes from."""

    name: str  # file stem, e.g. "chelsea"
    path: Path
    credit: str | None  # e.g. "Stefan van der Walt (photographer), via scikit-image"
    licence: str | None = None  # e.g. "CC0", "public domain"
    title: str | None = None  # e.g. "Chelsea the cat"


_FIELD = re.compile(r"^- (?P<key>[A-Za-z]+): (?P<value>.+)$")


def read_licences(directory: Path = SAMPLES_DIR) -> dict[str, dict[str, str]]:
    """Per file name, the one-line fields of its `LICENSE.md` section ({'Credit': …, 'Licence': …})."""
    path = directory / LICENCE_FILE
    if not path.is_file():
        return {}
    entries: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = entries.setdefault(line[3:].strip(), {})
            continue
        m = _FIELD.match(line)
        if current is not None and m:
            current.setdefault(m["key"], m["value"].strip())
    return entries


def sample_images(directory: Path = SAMPLES_DIR) -> list[SampleImage]:
    """The sample images, sorted by name; empty if the folder is missing (e.g. a wheel without it)."""
    if not directory.is_dir():
        return []
    licences = read_licences(directory)
    out = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        entry = licences.get(path.name, {})
        out.append(SampleImage(name=path.stem, path=path, credit=entry.get("Credit"),
                               licence=entry.get("Licence"), title=entry.get("Title")))
    return out


def sample_image(name: str, directory: Path = SAMPLES_DIR) -> SampleImage:
    """The sample called `name` (file stem); KeyError naming the available ones otherwise."""
    samples = sample_images(directory)
    for s in samples:
        if s.name == name:
            return s
    raise KeyError(f"no sample image {name!r}; available: {', '.join(s.name for s in samples) or 'none'}")
