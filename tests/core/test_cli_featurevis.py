"""`inception-explorer visualize | index | examples`: named PNGs, JSON Lines, one stderr line per bad input
or unreadable file, exit 2 for usage errors and 1 for failures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from explorer.cli import main
from explorer.core.model.samples import SAMPLES_DIR
from tests.netutil import calibrated_model, write_weights


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INCEPTION_EXPLORER_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(calibrated_model("googlenet"), tmp_path_factory.mktemp("fvw") / "w.safetensors")


def run(capsys, *args):
    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_visualize_writes_one_named_png_per_channel(capsys, tmp_path, weights):
    code, out, err = run(capsys, "visualize", "googlenet", "inception3a/2", "--channels", "0-2,7", "--steps", "2",
                         "--size", "48", "--weights", weights, "-o", tmp_path / "out")
    assert code == 0, err
    names = ["inception3a-2-ch000.png", "inception3a-2-ch001.png", "inception3a-2-ch002.png", "inception3a-2-ch007.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(tmp_path / "out" / n) for n in names]
    with Image.open(tmp_path / "out" / names[0]) as im:
        assert im.size == (48, 48) and im.mode == "RGB"
    assert "lucid#61" in err  # GoogLeNet as torchvision builds it is batch-normalised
    # A second run answers from the cache with the same pictures.
    first = np.asarray(Image.open(tmp_path / "out" / names[3]))
    code, out2, _ = run(capsys, "visualize", "googlenet", "inception3a/2", "--channels", "7", "--steps", "2",
                        "--size", "48", "--weights", weights, "-o", tmp_path / "again")
    assert code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "again" / names[3])), first)
    assert out2.strip().split("\t")[1] == out.splitlines()[3].split("\t")[1]


def test_visualize_takes_a_torchvision_reference_and_a_node(capsys, tmp_path):
    code, out, err = run(capsys, "visualize", "torchvision:googlenet", "inception3b", "--channels", "5",
                         "--steps", "1", "--size", "32", "--objective", "negative", "--weights", "none",
                         "-o", tmp_path / "o")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["inception3b-ch005-negative.png"]


@pytest.mark.parametrize("args, code, words", [
    (["googlenet", "inception9z/1"], 2, "no block or node 'inception9z'"),
    (["googlenet", "inception3a/5"], 2, "has 4 branch(es)"),
    (["googlenet", "inception3a/2", "--channels", "120-130"], 2, "has 128 channels"),
    (["googlenet", "inception3a/2", "--channels", "x"], 2, "--channels"),
    (["googlenet", "inception3a/2", "--steps", "0"], 2, "--steps 0"),
    (["googlenet", "inception3a/2", "--size", "8"], 2, "--size 8"),
    (["inception_v3", "Mixed_7c/1", "--size", "32"], 1, "too small"),
    (["googlenet", "inception3a/2", "--weights", "missing.pth"], 1, "missing.pth"),
    (["nosuchnet", "inception3a/2"], 2, "nosuchnet"),
])
def test_visualize_bad_input_is_one_line(capsys, tmp_path, monkeypatch, args, code, words):
    monkeypatch.chdir(tmp_path)
    extra = [] if "--weights" in args else ["--weights", "none"]
    got, out, err = run(capsys, "visualize", *args, *extra, "--steps" if "--steps" not in args else "--batch", "1",
                        "-o", tmp_path / "out")
    lines = [line for line in err.splitlines() if "warning: random weights" not in line]
    assert got == code and len(lines) == 1 and words in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_index_then_examples(capsys, tmp_path, weights):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.jpg", "astronaut.jpg"):
        Image.open(SAMPLES_DIR / name).convert("RGB").resize((160, 120)).save(folder / (name.split(".")[0] + ".png"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, out, err = run(capsys, "index", folder, "--model", "googlenet", "--weights", weights, "--batch", "2")
    assert code == 0, err
    assert out.startswith("3 indexed, 0 already indexed, 1 unreadable")
    assert err.count("\n") == 1 and "cannot index" in err and "broken.jpg" in err

    code, out, err = run(capsys, "examples", "googlenet", "inception4a/2", "3", "--weights", weights,
                         "--format", "jsonl", "-o", tmp_path / "crops")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["rank"] for r in records] == [1, 2, 3]
    code, array, err = run(capsys, "examples", "googlenet", "inception4a/2", "3", "--weights", weights,
                           "--format", "json")
    assert code == 0 and [r["path"] for r in json.loads(array)] == [r["path"] for r in records]  # one document
    assert {r["path"] for r in records} == {str(folder / n) for n in ("chelsea.png", "coffee.png", "astronaut.png")}
    assert records[0]["value"] >= records[1]["value"] >= records[2]["value"]
    for r in records:
        b = r["box"]
        with Image.open(r["crop"]) as im:  # the crop is the box cut from the 224×224 network input
            assert im.size == (b["right"] - b["left"], b["bottom"] - b["top"])
        assert 0 <= b["top"] < b["bottom"] <= 224 and 0 <= b["left"] < b["right"] <= 224

    code, out, err = run(capsys, "index", folder, "--model", "googlenet", "--weights", weights)
    assert code == 0 and out.startswith("0 indexed, 4 already indexed, 0 unreadable") and err == ""

    code, out, err = run(capsys, "examples", "googlenet", "inception4a/2", "3", "--weights", "none")
    assert code == 1 and "run `inception-explorer index" in err and err.count("\n") - err.count("warning") == 1
    code, out, err = run(capsys, "examples", "googlenet", "inception4a", "3", "--weights", weights)
    assert code == 2 and "give a branch" in err
    code, out, err = run(capsys, "index", tmp_path / "nope", "--model", "googlenet")
    assert code == 2 and "not a folder" in err


DEAD_NET = """
import torch
import torch.nn as nn


def build():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    with torch.no_grad():  # channel 1 of the second conv can never fire: no weights, a negative bias, a ReLU
        net[2].weight[1].zero_()
        net[2].bias[1] = -1.0
    return net
"""


def test_a_channel_that_never_fires_is_named_not_left_as_noise(tmp_path, capsys):
    model = tmp_path / "deadnet.py"
    model.write_text(DEAD_NET)
    assert main(["visualize", str(model), "3", "--channels", "1-3", "--steps", "8", "--size", "32",
                 "-o", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    values = {int(line.split("\t")[0][-7:-4]): float(line.split("\t")[1]) for line in out.splitlines()}
    notes = [line for line in err.splitlines() if "never fired" in line]
    assert values[1] == 0 and any("channel 1 " in n for n in notes)
    # Every channel named has ended at 0; none that fired is named.
    assert all(values[c] <= 0 for c in values if any(f"channel {c} " in n for n in notes))
    assert any(v > 0 for v in values.values()) and len(notes) < len(values)
