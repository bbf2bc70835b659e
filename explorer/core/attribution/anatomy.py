"""What each branch is for, over a folder: the mean knock-out effect of every branch per predicted class.

Each image's knock-outs (explorer.core.attribution.knockout.BranchEffects, with the image's own top-1 as the target)
are grouped by the class the plain network predicted; per branch and class the mean change in that class's
probability when the branch alone is switched off. A branch the network leans on for a class has a large negative
mean there; the image where a branch matters most is the one whose probability it lowers most.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Branch = tuple[str, int]


@dataclass(frozen=True)
class BranchRoles:
    """Per branch (rows) and predicted class (columns): the mean Δ p(class) of its knock-out, over the images."""

    branches: tuple[Branch, ...]
    classes: tuple[int, ...]  #: the predicted classes seen, in order of their index
    mean_delta: np.ndarray  #: (branches, classes)
    counts: tuple[int, ...]  #: images per class
    strongest: dict[Branch, tuple[str, float]]  #: the image whose prediction the branch lowers most, and by how much

    def top_classes(self, branch: Branch, k: int = 3) -> list[tuple[int, float]]:
        """The `k` classes whose probability the branch's knock-out lowers most on average (most negative first)."""
        row = self.mean_delta[self.branches.index(branch)]
        order = np.argsort(row, kind="stable")[:k]
        return [(self.classes[j], float(row[j])) for j in order]

    def leaned_on(self, cls: int) -> Branch:
        """The branch whose knock-out lowers `cls`'s probability most on average."""
        return self.branches[int(np.argmin(self.mean_delta[:, self.classes.index(cls)]))]


def branch_roles(results: Iterable[tuple[str, object]]) -> BranchRoles:
    """Aggregate `(image, BranchEffects)` pairs, each computed for its image's top-1 class (the target), by that class.
    ValueError when there are none, or when the images' branches differ."""
    results = list(results)
    if not results:
        raise ValueError("no images to summarise")
    branches = tuple((e.block, e.branch_index) for e in results[0][1].effects)
    by_class: dict[int, list[np.ndarray]] = {}
    strongest: dict[Branch, tuple[str, float]] = {}
    for image, effects in results:
        if tuple((e.block, e.branch_index) for e in effects.effects) != branches:
            raise ValueError(f"{image}: its knock-outs are of other branches")
        if effects.target != effects.top1:
            raise ValueError(f"{image}: its knock-outs are for class {effects.target}, not its top-1")
        deltas = np.array([e.delta_prob for e in effects.effects], dtype=np.float64)
        by_class.setdefault(effects.top1, []).append(deltas)
        for b, d in zip(branches, deltas):
            if b not in strongest or d < strongest[b][1]:
                strongest[b] = (str(image), float(d))
    classes = tuple(sorted(by_class))
    mean = np.stack([np.mean(by_class[c], axis=0) for c in classes], axis=1)
    return BranchRoles(branches, classes, mean, tuple(len(by_class[c]) for c in classes), strongest)


def roles_table(roles: BranchRoles, categories: list[str]) -> str:
    """The heat map as text: a row per branch ("block/BRANCH", 1-based), a column per class, mean Δ p in %."""
    from explorer.core.text import branch_number

    names = [categories[c] if c < len(categories) else str(c) for c in roles.classes]
    width = max(8, *(len(n) for n in names))
    rows = [f"{'branch':<16}" + "".join(f"{n:>{width + 1}}" for n in names),
            f"{'images':<16}" + "".join(f"{c:>{width + 1}}" for c in roles.counts)]
    for (block, k), row in zip(roles.branches, roles.mean_delta):
        rows.append(f"{block + '/' + str(branch_number(k)):<16}" + "".join(f"{100 * v:>{width}.1f}%" for v in row))
    return "\n".join(rows)


def write_heatmap(roles: BranchRoles, categories: list[str], path: str | Path, *, inputs=None) -> Path:
    """The heat map (branches × classes, mean Δ p: the darker red, the more the class loses without the branch) as
    a PNG, written whole or not at all (explorer.core.outputs)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    from explorer.core.outputs import write_file
    from explorer.core.text import branch_number

    font = ImageFont.load_default(size=13)
    names = [categories[c] if c < len(categories) else str(c) for c in roles.classes]
    labels = [f"{block}/{branch_number(k)}" for block, k in roles.branches]
    cell_w, cell_h = max(64, *(int(font.getlength(n)) + 12 for n in names)), 20
    left = max(int(font.getlength(t)) for t in labels) + 16
    top = 2 * cell_h + 8
    img = Image.new("RGB", (left + cell_w * len(names) + 8, top + cell_h * len(labels) + 8), "white")
    draw = ImageDraw.Draw(img)
    scale = max(1e-9, float(np.abs(roles.mean_delta).max()))
    for j, (name, count) in enumerate(zip(names, roles.counts)):
        x = left + j * cell_w
        draw.text((x + 4, 4), name, fill="black", font=font)
        draw.text((x + 4, 4 + cell_h), f"{count} images", fill=(90, 90, 90), font=font)
    for i, label in enumerate(labels):
        y = top + i * cell_h
        draw.text((4, y + 3), label, fill="black", font=font)
        for j, v in enumerate(roles.mean_delta[i]):
            t = min(1.0, abs(float(v)) / scale)
            colour = (255, int(255 * (1 - t)), int(255 * (1 - t))) if v < 0 else (int(255 * (1 - t)),
                                                                                  int(255 * (1 - t)), 255)
            x = left + j * cell_w
            draw.rectangle([x, y, x + cell_w - 2, y + cell_h - 2], fill=colour)
            draw.text((x + 4, y + 3), f"{100 * v:+.1f} %", fill="black" if t < 0.6 else "white", font=font)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return write_file(Path(path), buffer.getvalue(), inputs=inputs)
