"""Records as every command and export writes them: JSON Lines, one JSON array, CSV; and their provenance."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from explorer.core.classify.provenance import RANDOM, provenance_of
from explorer.core.classify.results import CSV_COLUMNS, RECORD_KEYS, ClassificationResult, csv_rows
from explorer.core.classify.images import expand_inputs
from explorer.core.model.weights import WeightsState
from explorer.core.records import record_writer, records_text


def test_a_json_array_is_valid_at_every_record_and_when_empty():
    out = io.StringIO()
    w = record_writer("json", out)
    w.close()
    assert json.loads(out.getvalue()) == []
    out = io.StringIO()
    w = record_writer("json", out)
    for i in range(3):
        w.write({"i": i, "x": math.nan})
        assert json.loads(out.getvalue() + "]") == [{"i": k, "x": None} for k in range(i + 1)]  # what close() adds
    w.close()
    w.close()  # once only
    assert json.loads(out.getvalue()) == [{"i": k, "x": None} for k in range(3)]


def test_jsonl_and_csv():
    records = [{"a": 1, "b": [1, 2]}, {"a": 2, "b": []}]
    assert [json.loads(line) for line in records_text("jsonl", records).splitlines()] == records
    text = records_text("csv", records, ("a", "n"), lambda r: [[r["a"], len(r["b"])]])
    assert list(csv.reader(io.StringIO(text))) == [["a", "n"], ["1", "2"], ["2", "0"]]
    with pytest.raises(ValueError, match="unknown format"):
        record_writer("xml", io.StringIO())


def _loaded(state: WeightsState):
    tf = SimpleNamespace(crop_size=[299], resize_size=[342], interpolation=SimpleNamespace(value="bilinear"),
                         mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    return SimpleNamespace(weights=state, transforms=lambda: tf)


def test_provenance_names_the_weights_file_and_its_hash(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"weights" * 1000)
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    p = provenance_of("inception_v3", _loaded(WeightsState("file", "file: w.pth", path=str(f))))
    d = p.to_dict("cuda:0")
    assert d == {"model": "inception_v3", "weights": {"file": str(f), "sha256": sha}, "device": "cuda:0",
                 "input_size": [299, 299], "preprocessing": {"resize": 342, "crop": 299, "interpolation": "bilinear",
                                                             "mean": [0.5] * 3, "std": [0.5] * 3}}
    random = provenance_of("inception_v3", _loaded(WeightsState("random", "none", "no weights requested")))
    assert random.to_dict("cpu")["weights"] == RANDOM and random.weights_sha256 is None
    # A TorchScript file's own weights: the file itself is what made the result.
    script = tmp_path / "m.pt"
    script.write_bytes(b"archive")
    own = provenance_of(str(script), _loaded(WeightsState("file", "the file's own (m.pt (TorchScript))")))
    assert own.to_dict("cpu")["weights"] == {"file": str(script), "sha256": hashlib.sha256(b"archive").hexdigest()}


def test_every_record_has_every_field_and_csv_a_row_per_class(tmp_path):
    p = provenance_of("googlenet", _loaded(WeightsState("random", "none")))
    ok = ClassificationResult("a.png", timings_ms={"decode": 1.0, "forward": 2.0}, image_size=(40, 30))
    ok.fill([0.75, 0.25], [3, 1], ["a", "b", "c", "d"])
    bad = ClassificationResult("b.png", error="not an image")
    records = [r.to_dict(p) for r in (ok, bad)]
    assert [tuple(r) for r in records] == [RECORD_KEYS] * 2
    rows = [dict(zip(CSV_COLUMNS, row)) for r in records for row in csv_rows(r)]
    assert [(r["path"], r["rank"], r["label"], r["prob"], r["error"]) for r in rows] == [
        ("a.png", 1, "d", "0.750000", ""), ("a.png", 2, "b", "0.250000", ""), ("b.png", "", "", "", "not an image")]
    assert rows[0]["preprocess_ms"] == "" and rows[0]["forward_ms"] == "2.000" and rows[0]["input_size"] == "299x299"


def test_a_file_named_twice_is_listed_once(tmp_path, monkeypatch):
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    found = expand_inputs(["a.png", tmp_path, "./b.jpg", "missing.png", "missing.png"])
    # The folder's a.png, b.jpg and link.png (a.png by another name) are there already, or the first of theirs.
    assert found == [Path("a.png"), tmp_path / "b.jpg", Path("missing.png")]
