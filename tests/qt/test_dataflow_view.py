"""The data-flow slide's painting: what it writes fits where it is written."""

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QFontMetricsF, QImage, QPainter

from explorer.core.lecture.dataflow import BranchSlide, Slide
from explorer.qt.lecture.dataflow_view import DataflowView, SlideFonts

# Inception v3's Mixed_7b, as its slide describes the branches' layers.
LAYERS = (("1×1 conv, 320",),
          ("1×1 conv, 384", "(1×3 conv, 384 ‖ 3×1 conv, 384)"),
          ("1×1 conv, 448", "3×3 conv, 384", "(1×3 conv, 384 ‖ 3×1 conv, 384)"),
          ("3×3 avg pool", "1×1 conv, 192"))


class RecordingPainter(QPainter):
    """A QPainter that remembers the wrapped text it draws (rectangle, flags, text, font)."""

    def __init__(self, device):
        super().__init__(device)
        self.wrapped = []

    def drawText(self, *args):  # noqa: N802 - QPainter's name
        if len(args) == 3 and isinstance(args[0], QRectF) and isinstance(args[1], int) \
                and args[1] & int(Qt.TextFlag.TextWordWrap):
            self.wrapped.append((QRectF(args[0]), args[1], args[2], self.font()))
        return super().drawText(*args)


def test_a_long_chain_of_layers_is_cut_at_a_word_with_an_ellipsis_not_mid_line(qtbot):
    """At 1280×720 the third branch of Mixed_7b needs four lines; three are shown. They were clipped
    (a line cut in half, nothing saying more follows); now the text drawn fits and ends with "…"."""
    maps = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    branches = tuple(BranchSlide(k, f"#{k}", layers, (320, 8, 8), maps, np.arange(4), 0.25)
                     for k, layers in enumerate(LAYERS))
    slide = Slide("block", 1, "Mixed_7b", "Mixed_7b", (1280, 8, 8), (2048, 8, 8), "cat", branches)
    view = DataflowView()
    qtbot.addWidget(view)
    view.set_slide(slide)
    img = QImage(1280, 720, QImage.Format.Format_RGB32)
    p = RecordingPainter(img)
    try:
        view.paint_slide(p, QRectF(0, 0, 1280, 720), SlideFonts(720, view.font()))
    finally:
        p.end()
    drawn = {text.replace(" …", ""): (rect, flags, text, font) for rect, flags, text, font in p.wrapped}
    assert len(p.wrapped) == 4
    for layers in LAYERS:
        full = " → ".join(layers)
        key = next(k for k in drawn if full.startswith(k))
        rect, flags, text, font = drawn[key]
        need = QFontMetricsF(font).boundingRect(QRectF(0, 0, rect.width(), 1e4), flags, text).height()
        assert need <= rect.height() + 0.5, (text, need, rect.height())
        full_need = QFontMetricsF(font).boundingRect(QRectF(0, 0, rect.width(), 1e4), flags, full).height()
        if full_need <= rect.height() + 0.5:
            assert text == full
        else:  # the case this test is about (the third branch, in the fonts of the test machines)
            assert text.endswith(" …") and full.startswith(text[:-2]), text
