"""`inception-explorer classify`: good and bad files mixed, every output format, exit codes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from explorer.cli import main
from explorer.core.model.zoo import get_spec
from explorer.core.classify.results import CSV_COLUMNS, RECORD_KEYS
from tests.netutil import bad_corpus, calibrated_model, write_weights
from tests.vocabulary import assert_one_percent_style

CATEGORIES = get_spec("googlenet").categories()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Two good images, every kind of bad file, and the calibrated weights (no download attempted)."""
    folder = tmp_path_factory.mktemp("cli")
    model = calibrated_model("googlenet")
    good = []
    for i, (w, h) in enumerate([(320, 240), (200, 300)]):
        gen = torch.Generator().manual_seed(i)
        low = (torch.rand(3, 6, 8, generator=gen) * 255).byte().permute(1, 2, 0).numpy()
        p = folder / f"good{i}.{'jpg' if i == 0 else 'png'}"
        Image.fromarray(low).resize((w, h), Image.BICUBIC).save(p)
        good.append(p)
    tf = get_spec("googlenet").transforms()
    with torch.no_grad():
        ref = model(torch.stack([tf(Image.open(p).convert("RGB")) for p in good]))
    (folder / "bad").mkdir()
    bad = {name: path for name, (path, _) in bad_corpus(folder / "bad").items()}
    return {
        "good": good,
        "bad": bad,
        "ref_top5": ref.topk(5, dim=1).indices.tolist(),
        "pth": write_weights(model, folder / "calibrated.pth"),
        "safetensors": write_weights(model, folder / "calibrated.safetensors"),
        "folder": folder,
    }


def run_cli(*args, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "explorer", "classify", *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
    )


def test_mixed_batch_json_in_a_subprocess(corpus):
    # (A directory is a folder to the CLI, expanded rather than refused; the others are bad files.)
    bad = [p for name, p in corpus["bad"].items() if name != "folder.jpg"]
    inputs = [corpus["good"][0], *bad[:4], corpus["good"][1], *bad[4:]]
    proc = run_cli(*inputs, "--model", "googlenet", "--weights", corpus["safetensors"],
                   "--device", "cpu", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]  # JSON Lines: one object per image
    assert [o["path"] for o in out] == [str(p) for p in corpus["good"]]
    for o, ref in zip(out, corpus["ref_top5"]):
        assert set(o) >= {"path", "top", "timings_ms"}
        assert [t["index"] for t in o["top"]] == ref
        assert [t["label"] for t in o["top"]] == [CATEGORIES[i] for i in ref]
        probs = [t["prob"] for t in o["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
        assert {"decode", "preprocess", "forward"} <= set(o["timings_ms"])
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and "random weights" not in proc.stderr
    assert len(lines) == len(bad), lines
    for path, line in zip(bad, lines):
        assert line.startswith(f"inception-explorer: cannot classify {path}: "), line


def _main(capsys, *args):
    code = main(["classify", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_all_inputs_bad_exits_non_zero(corpus, capsys):
    bad = [corpus["bad"]["empty.jpg"], corpus["bad"]["text.jpg"], corpus["bad"]["missing.jpg"]]
    code, out, err = _main(capsys, *bad, "--model", "googlenet", "--weights", corpus["pth"], "--device", "cpu")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == len(bad) + 1 and "none of the 3" in lines[-1]
    for path, line in zip(bad, lines):
        assert line.startswith(f"inception-explorer: cannot classify {path}: ")


def test_csv_table_and_folder(corpus, capsys, tmp_path):
    for p in corpus["good"]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    code, out, err = _main(capsys, tmp_path, "--model", "googlenet", "--weights", corpus["pth"],
                           "--device", "cpu", "--format", "csv", "--top", "3", "--exact-decode")
    assert code == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["path"] for r in rows] == [str(tmp_path / p.name) for p in corpus["good"] for _ in range(3)]
    assert [int(r["index"]) for r in rows] == [i for ref in corpus["ref_top5"] for i in ref[:3]]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 1, 2, 3]
    code, out, err = _main(capsys, corpus["good"][0], "--model", "googlenet", "--weights", corpus["pth"],
                           "--device", "cpu")
    assert code == 0 and CATEGORIES[corpus["ref_top5"][0][0]] in out and "images/s" in out
    assert assert_one_percent_style(out) == 5  # the table's top-5, '41.2 %' as everywhere else


def test_random_weights_warning(corpus, capsys):
    code, out, err = _main(capsys, corpus["good"][0], "--model", "googlenet", "--weights", "none",
                           "--device", "cpu", "--format", "jsonl")
    assert code == 0 and len(out.splitlines()) == 1 and json.loads(out)["path"] == str(corpus["good"][0])
    assert json.loads(out)["provenance"]["weights"] == "random"
    assert err.startswith("inception-explorer: warning: random weights: predictions are meaningless (")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--model", "alexnett"], "unknown model"),
    (["--model", "googlenet", "--top", "0"], "--top 0"),
    (["--model", "googlenet", "--weights", "/nonexistent/w.pth"], "no such weight file"),
])
def test_user_errors_are_one_line(corpus, capsys, args, message):
    code, out, err = _main(capsys, corpus["good"][0], *args)
    assert code != 0 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_no_images_found(tmp_path, capsys):
    code, out, err = _main(capsys, tmp_path, "--model", "googlenet")
    assert code == 1 and "no image files found" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(corpus, capsys):
    code, out, err = _main(capsys, corpus["good"][0], "--model", "googlenet", "--device", "cuda")
    assert code == 1 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- one record, with its provenance


def test_json_is_one_array_and_jsonl_an_object_a_line(corpus, capsys):
    # Old behaviour: --format json printed JSON Lines, which json.load rejects.
    args = [*corpus["good"], "--model", "googlenet", "--weights", corpus["pth"], "--device", "cpu"]
    code, out, _ = _main(capsys, *args, "--format", "json")
    doc = json.loads(out)
    assert code == 0 and isinstance(doc, list) and [d["path"] for d in doc] == [str(p) for p in corpus["good"]]
    code, out, _ = _main(capsys, *args, "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    untimed = [{k: v for k, v in d.items() if k != "timings_ms"} for d in doc]
    assert code == 0 and [{k: v for k, v in d.items() if k != "timings_ms"} for d in lines] == untimed
    for d in doc:
        assert tuple(d) == RECORD_KEYS and [t["rank"] for t in d["top"]] == [1, 2, 3, 4, 5]
    code, out, _ = _main(capsys, corpus["bad"]["empty.jpg"], *args[2:], "--format", "json")
    assert code == 1 and json.loads(out) == []  # nothing classified: still one valid document


def test_records_name_their_provenance(corpus, capsys):
    code, out, _ = _main(capsys, corpus["good"][0], "--model", "googlenet", "--weights", corpus["safetensors"],
                         "--device", "cpu", "--format", "jsonl")
    prov = json.loads(out)["provenance"]
    sha = hashlib.sha256(corpus["safetensors"].read_bytes()).hexdigest()
    assert prov["weights"] == {"file": str(corpus["safetensors"].resolve()), "sha256": sha}
    assert prov["model"] == "googlenet" and prov["device"] == "cpu" and prov["input_size"] == [224, 224]
    tf = get_spec("googlenet").transforms()  # torchvision's own preprocessing of the weights
    assert prov["preprocessing"] == {"resize": tf.resize_size[0], "crop": tf.crop_size[0], "interpolation": "bilinear",
                                     "mean": list(tf.mean), "std": list(tf.std)}
    code, out, _ = _main(capsys, corpus["good"][0], "--model", "googlenet", "--weights", "none", "--device", "cpu",
                         "--format", "csv", "--top", "2")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 2
    assert {(r["weights"], r["weights_sha256"], r["model"], r["input_size"], r["mean"]) for r in rows} == {
        ("random", "", "googlenet", "224x224", "0.485 0.456 0.406")}


def test_a_file_named_twice_is_classified_once(corpus, capsys, tmp_path, monkeypatch):
    for p in corpus["good"]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    first = tmp_path / corpus["good"][0].name
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(capsys, first, tmp_path, f"./{first.name}", "--model", "googlenet",
                           "--weights", corpus["pth"], "--device", "cpu", "--format", "jsonl")
    paths = [json.loads(line)["path"] for line in out.splitlines()]
    assert code == 0 and paths == [str(first), str(tmp_path / corpus["good"][1].name)], paths


def test_ctrl_c_leaves_one_valid_json_document(corpus, tmp_path):
    """--format json to a file, interrupted after its first record: the array is closed, exit 130."""
    paths = [tmp_path / f"{i:02d}.png" for i in range(40)]
    for p in paths:
        p.write_bytes(corpus["good"][1].read_bytes())
    out = tmp_path / "out.json"
    with out.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "explorer", "classify", *map(str, paths), "--model",
                                 "googlenet", "--weights", "none", "--device", "cpu", "--format", "json",
                                 "--batch", "1"], stdout=f, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while '"path"' not in out.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    doc = json.loads(out.read_text())
    assert proc.returncode == 130 and "interrupted" in err, err
    assert 1 <= len(doc) < len(paths) and [d["path"] for d in doc] == [str(p) for p in paths[: len(doc)]]
