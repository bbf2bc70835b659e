"""The handout PDF: its pages, searchable text that names the real model's blocks and branches, the image's
top-5 as a plain forward computes it; bad input leaves no file; the window writes it in a worker."""

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pypdf = pytest.importorskip("pypdf")

from explorer.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _pages(path) -> list[str]:
    """Each page's text, ligatures undone and white space collapsed (Qt places words one by one)."""
    reader = pypdf.PdfReader(str(path))
    return [" ".join(unicodedata.normalize("NFKC", p.extract_text()).split()) for p in reader.pages]


def _headings(pages: list[str], titles: list[str]) -> list[str]:
    """The section each page belongs to: a page either opens the next section or continues the last."""
    out, k = [], 0
    for text in pages:
        if k < len(titles) and titles[k] in text and "(continued)" not in text.split(titles[k], 1)[1][:14]:
            out.append(titles[k])
            k += 1
        else:
            assert out and f"{out[-1]} (continued)" in text, (titles, text[:200])
            out.append(out[-1] + " (continued)")
    return out


@pytest.fixture
def picture(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tabby_photo.png"
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
    return path


def _plain_top5(name: str, path) -> set[str]:
    """Top-5 labels of the model's plain forward on torchvision's own preprocessing (not the Classifier's)."""
    import torch
    from torchvision.models import GoogLeNet_Weights

    from explorer.core.model.loading import load_model

    loaded = load_model(name, weights="none")  # the same seeded random weights
    x = GoogLeNet_Weights.IMAGENET1K_V1.transforms()(Image.open(path).convert("RGB"))[None]
    with torch.no_grad():
        idx = loaded.module.eval()(x).softmax(1).topk(5).indices[0].tolist()
    cats = GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]
    return {cats[i] for i in idx}


def test_googlenet_handout_with_an_image(tmp_path, picture, capsys):
    out = tmp_path / "googlenet.pdf"
    assert main(["handout", "googlenet", "--weights", "none", "--size", "96", "--image", str(picture),
                 "--block", "inception3a", "inception4e", "-o", str(out)]) == 0
    pages = _pages(out)
    name = picture.name
    titles = ["Block graph", "Paper table: googlenet at 96×96", "Shape trace at 96×96", f"Top-5 of {name}",
              "Block inception3a: feature maps", "Block inception4e: feature maps", f"Attribution: Grad-CAM of {name}"]
    heads = _headings(pages, titles)
    assert [h for h in heads if "(continued)" not in h] == titles
    text = " ".join(pages)

    # Every block of torchvision's GoogLeNet by its module name, and each chosen block's branch labels from
    # a block graph built here.
    import torchvision

    from explorer.core.graph.blockgraph import build_block_graph
    from explorer.core.model.zoo import get_spec

    tv_blocks = [n for n, m in torchvision.models.googlenet(weights=None, init_weights=False).named_children()
                 if type(m).__name__ == "Inception"]
    assert len(tv_blocks) == 9
    assert all(b in text for b in tv_blocks)
    graph = build_block_graph(get_spec("googlenet"))
    for block in ("inception3a", "inception4e"):
        for b in graph.node(block).branches:
            assert b.label in text, b.label
    assert "#5×5 reduce → #5×5 (3×3 kernel)" in text  # torchvision's 3×3 in the paper's 5×5 branch
    # The printed-vs-computed notes of the paper table.
    assert "paper" in pages[heads.index(titles[1])] and "Szegedy" in text
    # The image by its file name, and its top-5 as the plain model computes them.
    assert name in pages[heads.index(titles[3])]
    for label in _plain_top5("googlenet", picture):
        assert label in pages[heads.index(titles[3])], label
    assert "wrote" in capsys.readouterr().err


def test_an_opened_resnet18_without_an_image(tmp_path):
    out = tmp_path / "r18.pdf"
    assert main(["handout", "torchvision:resnet18", "--weights", "none", "--size", "64", "-o", str(out)]) == 0
    pages = _pages(out)
    heads = _headings(pages, ["Block graph", "Paper table", "Shape trace at 64×64", "Block layer1.0"])
    assert heads[-1].startswith("Block layer1.0")
    text = " ".join(pages)
    import torchvision

    for name in ("conv1", "layer1.0", "layer2.0", "layer4.1", "fc"):
        torchvision.models.resnet18().get_submodule(name)  # a real module of the model
        assert name in text
    assert "Top-5" not in text and "Grad-CAM" not in text


@pytest.mark.parametrize("case", ["missing image", "unknown block", "bad weights", "unwritable", "folder",
                                  "not an image", "image is a folder"])
def test_bad_input_is_one_line_and_no_file(tmp_path, picture, capsys, case):
    out = tmp_path / "h.pdf"
    args = ["handout", "googlenet", "--weights", "none", "--size", "64", "-o", str(out)]
    if case == "missing image":
        args += ["--image", str(tmp_path / "nope.jpg")]
    elif case == "unknown block":
        args += ["--block", "inception9z"]
    elif case == "bad weights":
        bad = tmp_path / "w.pth"
        bad.write_bytes(b"not a state dict")
        args[3] = str(bad)
    elif case == "unwritable":
        args[-1] = str(tmp_path / "no" / "such" / "folder" / "h.pdf")
    elif case == "folder":
        args[-1] = str(tmp_path)
    elif case == "image is a folder":
        args += ["--image", str(tmp_path)]
    else:
        txt = tmp_path / "notes.jpg"
        txt.write_text("hello")
        args += ["--image", str(txt)]
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len([line for line in err if "error" in line]) == 1 and "Traceback" not in "\n".join(err)
    assert not list(tmp_path.rglob("*.pdf*"))
    if case == "image is a folder":
        assert "a folder, not an image" in "\n".join(err)


def test_a_failure_while_drawing_leaves_no_file(tmp_path, monkeypatch):
    from explorer.qt.lecture import handout_pdf

    calls = []

    def broken(pg, section, drawings):
        calls.append(section.title)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(pg, section, drawings)

    real = handout_pdf._section
    monkeypatch.setattr(handout_pdf, "_section", broken)
    out = tmp_path / "h.pdf"
    assert main(["handout", "googlenet", "--weights", "none", "--size", "64", "-o", str(out)]) != 0
    assert len(calls) == 3 and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_runs_without_a_display(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = tmp_path / "h.pdf"
    r = subprocess.run([sys.executable, "-m", "explorer", "handout", "googlenet", "--weights", "none", "--size", "64",
                        "-o", str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(pypdf.PdfReader(str(out)).pages) >= 4


# -- the window ----------------------------------------------------------------------------------


def test_file_export_handout_runs_as_a_job(make_window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    window = make_window(classify_sample=True)
    qtbot.waitUntil(lambda: getattr(window.state.shown_image, "capture", None) is not None, timeout=120_000)
    name = Path(window.state.shown_image.source).name
    window.graph_page.set_input_size(64)
    window.view.select("inception4b")  # the selected block is the one shown
    window.overlay_menu.actions["params"].trigger()
    out = tmp_path / "window.pdf"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "PDF (*.pdf)"))
    written = []
    window.actions["export_handout"].trigger()
    exp = window.exports.handout_export
    exp.written.connect(written.append)
    # Its progress sits in the window's lower right corner, off the banners above the graph.
    dialog = exp.dialog.frameGeometry()
    for strip in (window.weights_bar, window.banner):
        top = strip.mapToGlobal(strip.rect().topLeft())
        assert not dialog.intersects(strip.rect().translated(top)), (dialog, strip)
    assert window.frameGeometry().contains(dialog.center())
    qtbot.waitUntil(lambda: bool(written), timeout=120_000)
    assert written == [str(out)]
    pages = _pages(out)
    heads = _headings(pages, ["Block graph", "Paper table: googlenet at 64×64", "Shape trace at 64×64",
                              f"Top-5 of {name}", "Block inception4b", f"Attribution: Grad-CAM of {name}"])
    assert "Parameters (log scale)" in pages[0]  # the overlay on screen, with its legend
    block_page = pages[heads.index("Block inception4b")]
    for b in window.graph.node("inception4b").branches:
        assert b.label in block_page
    top5 = pages[heads.index(f"Top-5 of {name}")]
    # The window's classifier runs a batch-norm-folded copy, the handout the model as loaded: with random
    # weights the 5th and 6th classes can be within rounding of each other, so one of five may differ.
    shown = window.state.shown_image.result.top
    assert shown[0].label in top5 and sum(p.label in top5 for p in shown) >= 4

    # Cancel: the job stops, nothing is written, no error.
    from explorer.core.session import events as ev

    ended = []
    window.session.on(ev.JobEnded, lambda e: ended.append(e.outcome) if e.lane == "model/handout" else None)
    cancelled = tmp_path / "cancelled.pdf"
    assert window.exports.export_handout(cancelled) is True
    assert window.session.runner.running("model/handout") is not None
    exp.cancel()
    qtbot.waitUntil(lambda: ended == ["cancelled"], timeout=60_000)
    qtbot.wait(50)
    assert not cancelled.exists() and not list(tmp_path.glob(".cancelled*"))

    # An output that cannot be written: the window says so, nothing is left behind.
    bad = tmp_path / "missing" / "x.pdf"
    with qtbot.waitSignal(exp.failed, timeout=120_000):
        window.exports.export_handout(bad)
    assert "handout failed" in window.banner.text() and "x.pdf" in window.banner.text()
    assert not bad.parent.exists()


def test_a_table_continued_on_a_page_takes_rows_with_its_notes(tmp_path):
    """Inception v3's paper table ran over by its last notes only: page 3 held two lines. The notes now take
    the table's last rows with them, so no continuation page is a page of notes alone."""
    from pypdf import PdfReader

    out = tmp_path / "v3.pdf"
    assert main(["handout", "inception_v3", "--weights", "none", "-o", str(out)]) == 0
    pages = [p.extract_text() for p in PdfReader(out).pages]
    continued = [t for t in pages if "Paper\ttable" in t.replace(" ", "\t") and "(continued)" in t]
    assert continued, "the paper table fits one page: the case is not exercised"
    for text in continued:
        assert text.count("Mixed_") + text.count("fc") >= 2, text[:300]  # rows of the table, not only notes


@pytest.mark.parametrize("weights", ["none", "auto"], ids=["random", "trained"])
def test_the_command_line_s_handout_says_the_caveat_once_on_each_image_page(tmp_path, weights):
    """`handout` on the demo model with a drawn image: with random weights each page over the image (its top-5, the
    block's feature maps, the Grad-CAM) says once that the numbers mean nothing, as the window's PDF does, and no
    other page says it; with the shipped weights no page does."""
    from explorer.core.demo.samples import drawn_samples

    path = tmp_path / "ring.png"
    Image.fromarray(drawn_samples()[2].image).save(path)
    out = tmp_path / "demo.pdf"
    assert main(["handout", "shapes_inception", "--weights", weights, "--image", str(path), "-o", str(out)]) == 0
    pages = _pages(out)
    titles = ["Block graph", "Paper table: shapes_inception at 64×64", "Shape trace at 64×64", "Top-5 of ring.png",
              "Block inception3a: feature maps", "Attribution: Grad-CAM of ring.png"]
    heads = _headings(pages, titles)
    over_image = {"Top-5 of ring.png", "Block inception3a: feature maps", "Attribution: Grad-CAM of ring.png"}
    for head, text in zip(heads, pages):
        said = text.count("mean nothing for a network that has not learned")
        expected = int(weights == "none" and head.removesuffix(" (continued)") in over_image)
        assert said == expected, (head, text[:300])
        if head.removesuffix(" (continued)") in over_image:
            assert text.lower().count("random weights") == expected, (head, text[:400])
