"""`inception-explorer ablate`: per image and branch, the knock-out's Δlogit, Δprobability and new top-1, checked
against torchvision's preprocessing and torchvision's GoogLeNet with a forward hook on the branch module; bad files
one line each, the rest done, exit 1 at the end."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest
import torch
from PIL import Image

from explorer.cli import main
from explorer.core.model.samples import SAMPLES_DIR
from explorer.core.model.zoo import get_spec
from tests.netutil import bad_corpus, calibrated_model, write_weights

ATOL = 5e-4  # float32 rounding: our knock-outs of a block run as one batch (tests/core/test_knockout.py)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablate")
    good = [folder / "cat.png", folder / "coffee.jpg"]
    Image.open(SAMPLES_DIR / "chelsea.png").convert("RGB").resize((260, 200)).save(good[0])
    Image.open(SAMPLES_DIR / "coffee.jpg").convert("RGB").resize((240, 240)).save(good[1])
    (folder / "bad").mkdir()
    bad = bad_corpus(folder / "bad")
    bad = [bad["truncated.png"][0], bad["text.jpg"][0]]
    return {"good": good, "bad": bad, "weights": write_weights(calibrated_model("googlenet"), folder / "w.safetensors")}


def run(capsys, *args):
    try:
        code = main(["ablate", *map(str, args)])
    except SystemExit as e:  # argparse's own errors (an unknown --mode) exit from the parser
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def hooked_logits(model, x, block: str, branch_number: int, mode: str) -> torch.Tensor:
    """torchvision's GoogLeNet with `block`'s branch (1-based, as people number it) replaced through a hook."""
    def replace(m, i, o):
        return torch.zeros_like(o) if mode == "zero" else o.mean((2, 3), keepdim=True).expand_as(o)

    h = model.get_submodule(f"{block}.branch{branch_number}").register_forward_hook(replace)
    try:
        with torch.no_grad():
            return model(x)[0]
    finally:
        h.remove()


def test_effects_equal_hooks_bad_files_one_line_each(corpus, capsys):
    inputs = [corpus["good"][0], corpus["bad"][0], corpus["good"][1], corpus["bad"][1]]
    code, out, err = run(capsys, *inputs, "--model", "googlenet", "--weights", corpus["weights"],
                         "--blocks", "inception4e", "inception5b/2", "--mode", "mean", "--format", "jsonl")
    assert code == 1, err  # a file failed: the others are done, the exit says so at the end
    bad_lines = [line for line in err.splitlines() if "cannot ablate" in line]
    assert len(bad_lines) == 2 and all(str(b) in line for b, line in zip(corpus["bad"], bad_lines))
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in corpus["good"]]

    model = calibrated_model("googlenet")
    tf = get_spec("googlenet").transforms()
    categories = get_spec("googlenet").categories()
    sha = hashlib.sha256(corpus["weights"].read_bytes()).hexdigest()
    for r in records:
        x = tf(Image.open(r["path"]).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            plain = model(x)[0]
        t = int(plain.argmax())
        assert (r["target"], r["top1"], r["label"], r["mode"]) == (t, t, categories[t], "mean")
        assert r["logit"] == pytest.approx(plain[t].item(), abs=ATOL)
        assert [(b["block"], b["branch"]) for b in r["branches"]] == [
            ("inception4e", 1), ("inception4e", 2), ("inception4e", 3), ("inception4e", 4), ("inception5b", 2)]
        p0 = torch.softmax(plain, 0)[t].item()
        for b in r["branches"]:
            ref = hooked_logits(model, x, b["block"], b["branch"], "mean")
            assert b["delta_logit"] == pytest.approx((ref[t] - plain[t]).item(), abs=ATOL)
            assert b["delta_prob"] == pytest.approx(torch.softmax(ref, 0)[t].item() - p0, abs=1e-5)
            assert b["top1"] == int(ref.argmax()) and b["top1_label"] == categories[b["top1"]]
            assert b["top1_changed"] == (b["top1"] != t)
        assert any(abs(b["delta_logit"]) > 100 * ATOL for b in r["branches"])
        prov = r["provenance"]
        assert prov["model"] == "googlenet" and prov["weights"]["sha256"] == sha and prov["device"] == "cpu"
        assert prov["input_size"] == [224, 224] and prov["preprocessing"]["crop"] == 224
        assert r["weights_learned"] is True and "caveat" not in r and "ablate_ms" in r["timings"]


def test_csv_a_row_per_branch_table_and_a_target(corpus, capsys):
    args = [corpus["good"][1], "--model", "googlenet", "--weights", corpus["weights"], "--blocks", "inception3a/4",
            "inception5a/1", "inception3a/4", "--target", "3"]
    code, out, err = run(capsys, *args, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["block"], r["branch"]) for r in rows] == [("inception3a", "4"), ("inception5a", "1")]
    assert all(r["target"] == "3" and r["mode"] == "zero" and r["path"] == str(corpus["good"][1]) for r in rows)
    sha = hashlib.sha256(corpus["weights"].read_bytes()).hexdigest()
    assert {(r["model"], r["weights_sha256"], r["device"], r["input_size"]) for r in rows} == {
        ("googlenet", sha, "cpu", "224x224")}
    model = calibrated_model("googlenet")
    x = get_spec("googlenet").transforms()(Image.open(corpus["good"][1]).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        plain = model(x)[0]
    for r in rows:
        ref = hooked_logits(model, x, r["block"], int(r["branch"]), "zero")
        assert float(r["delta_logit"]) == pytest.approx((ref[3] - plain[3]).item(), abs=ATOL)
        assert float(r["plain_logit"]) == pytest.approx(plain[3].item(), abs=ATOL)

    code, out, err = run(capsys, *args)  # the table
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and str(corpus["good"][1]) in lines[0] and "class 3" in lines[0]
    assert "inception3a branch 4" in lines[1] and "Δlogit" in lines[1] and " %" in lines[1]
    assert "inception5a branch 1" in lines[2]


@pytest.mark.parametrize("args, words", [
    (["--blocks", "inception9z"], "no block or node"),
    (["--blocks", "inception4e/7"], "has 4 branch"),
    (["--blocks", "maxpool3"], "not a block with branches"),
    (["--target", "1000"], "1000 classes"),
    (["--target", "-1"], "from 0"),
    (["--mode", "noise"], "invalid choice"),
])
def test_usage_errors_exit_2_with_one_line(corpus, capsys, args, words):
    code, out, err = run(capsys, corpus["good"][0], "--model", "googlenet", "--weights", corpus["weights"], *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err, err


def test_only_bad_files_exit_1_and_say_so(corpus, capsys):
    code, out, err = run(capsys, *corpus["bad"], "--model", "googlenet", "--weights", corpus["weights"],
                         "--format", "json")
    assert code == 1 and json.loads(out) == []  # still one valid document
    lines = err.strip().splitlines()
    assert len(lines) == 3 and "none of the 2" in lines[-1]


def test_by_class_on_the_demo_model_says_which_branch_each_shape_leans_on(tmp_path, capsys):
    """ablate --by-class over drawn shapes: the table of mean Δ p per branch and predicted class equals the mean
    of the per-image records on stdout (recomputed here from them), the heat map is a PNG of that many cells, and
    every class's most-leaned-on branch is a real knock-out (its mean below −1 %) on the trained network."""
    import numpy as np

    from explorer.core.demo.task import SHAPE_CLASSES

    assert main(["draw-shapes", str(tmp_path / "shapes"), "--count", "12", "--seed", "2427"]) == 0
    capsys.readouterr()
    png = tmp_path / "roles.png"
    code, out, err = run(capsys, tmp_path / "shapes" / "images", "--model", "shapes_inception",
                         "--blocks", "inception4b", "inception5a", "--format", "jsonl", "--by-class", png)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 12
    by_class: dict[int, list] = {}
    for r in records:
        assert r["target"] == r["top1"]
        by_class.setdefault(r["top1"], []).append([b["delta_prob"] for b in r["branches"]])
    branches = [f"{b['block']}/{b['branch']}" for b in records[0]["branches"]]
    table = err.split("probability with one branch off:\n", 1)[1].splitlines()
    header, counts, rows = table[0].split(), table[1].split()[1:], table[2:2 + len(branches)]
    classes = sorted(by_class)
    assert header[1:] == [SHAPE_CLASSES[c] for c in classes]
    assert [int(n) for n in counts] == [len(by_class[c]) for c in classes]
    expected = np.array([np.mean(by_class[c], axis=0) for c in classes]).T  # (branches, classes)
    for name, row, want in zip(branches, rows, expected):
        cells = row.split()
        assert cells[0] == name
        np.testing.assert_allclose([float(v.rstrip("%")) for v in cells[1:]], 100 * want, atol=0.051)
    assert expected.min(axis=0).max() < -0.01  # each shape loses with some branch off
    image = Image.open(png)
    assert image.format == "PNG" and image.width > 100 * len(classes) // 2 and image.height > 20 * len(branches)
    for name in branches:
        assert f"{name}: matters most for" in err
    # --by-class groups by each image's own top-1: a fixed --target is refused.
    code, out, err = run(capsys, tmp_path / "shapes" / "images", "--model", "shapes_inception", "--target", "1",
                         "--by-class")
    assert code == 2 and "takes no --target" in err
