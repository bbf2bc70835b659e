"""`inception-explorer attribute`: maps written as PNG + .npy, JSON Lines with every field, bad files
one line each while the batch goes on, usage errors exit 2."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from PIL import Image

from explorer.cli import main
from explorer.core.model.samples import SAMPLES_DIR
from explorer.core.model.zoo import get_spec
from tests.netutil import bad_corpus, calibrated_model, write_weights


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attr")
    good = [folder / "cat.png", folder / "coffee.jpg"]
    Image.open(SAMPLES_DIR / "chelsea.png").convert("RGB").resize((260, 200)).save(good[0])
    Image.open(SAMPLES_DIR / "coffee.jpg").convert("RGB").resize((240, 240)).save(good[1])
    (folder / "bad").mkdir()
    bad = bad_corpus(folder / "bad")
    bad = [bad["truncated.png"][0], bad["text.jpg"][0]]
    return {"good": good, "bad": bad, "weights": write_weights(calibrated_model("googlenet"), folder / "w.safetensors")}


def run(capsys, *args):
    code = main(["attribute", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_maps_metrics_and_bad_files(corpus, capsys, tmp_path):
    inputs = [corpus["good"][0], corpus["bad"][0], corpus["good"][1], corpus["bad"][1]]
    code, out, err = run(capsys, *inputs, "--model", "googlenet", "--weights", corpus["weights"],
                         "--method", "saliency,grad_cam", "--layer", "inception4e/2",
                         "--metrics", "deletion,insertion", "--steps", "2", "--device", "cpu", "-o", tmp_path)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]  # JSON Lines: each line a document
    assert [(r["path"], r["method"]) for r in records] == [
        (str(g), m) for g in corpus["good"] for m in ("saliency", "grad_cam")]
    bad_lines = [line for line in err.splitlines() if "cannot attribute" in line]
    assert len(bad_lines) == 2 and all(str(b) in line for b, line in zip(corpus["bad"], bad_lines))
    assert "Traceback" not in err

    # The independent reference: torchvision's preprocessing, the plain model, captum on it.
    model = calibrated_model("googlenet")
    tf = get_spec("googlenet").transforms()
    for r in records:
        x = tf(Image.open(r["path"]).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            probs = torch.softmax(model(x), 1)[0]
        assert r["target"] == int(probs.argmax()) and r["label"] == get_spec("googlenet").categories()[r["target"]]
        for kind in ("deletion", "insertion"):
            c = r[kind]
            assert len(c["curve"]) == len(c["random_curve"]) == 3
            assert 0 <= c["auc"] <= 1 and 0 <= c["random_auc"] <= 1
        assert r["deletion"]["curve"][0] == pytest.approx(float(probs[r["target"]]), rel=1e-3)
        assert r["insertion"]["curve"][-1] == pytest.approx(float(probs[r["target"]]), rel=1e-3)
        assert sum(r["branch_shares"]["inception4e"]) == pytest.approx(1, abs=1e-4)
        assert {"attribution_ms", "curves_ms", "branch_shares_ms"} <= set(r["timings"])
        heat = np.load(r["npy"])
        assert heat.shape == (224, 224)
        with Image.open(r["png"]) as im:
            assert im.size == (224, 224) and im.mode == "RGB"
        assert r["npy"].endswith(f"{r['method']}.npy")  # one file per method, none overwritten
        if r["method"] == "saliency":
            ref = Saliency(model).attribute(x.requires_grad_(True), target=r["target"], abs=True)[0].amax(0)
            np.testing.assert_allclose(heat, ref.numpy(), rtol=1e-3, atol=1e-6)
            assert r["layer"] is None
        else:
            assert r["layer"] == "inception4e branch 2"


def test_sanity_in_json_and_csv_and_the_default_layer(corpus, capsys, monkeypatch):
    import explorer.core.attribution.faithfulness
    import explorer.core.attribution.metrics

    monkeypatch.setattr(explorer.core.attribution.faithfulness, "ROAD_PERCENTILES", (50,))  # one imputation each way
    monkeypatch.setattr(explorer.core.attribution.metrics, "NOISE_SEEDS", (0, 1))  # the fewest that make a spread
    monkeypatch.setattr(explorer.core.attribution.metrics, "SMOOTH_SAMPLES", 2)
    args = [corpus["good"][1], "--model", "googlenet", "--weights", corpus["weights"], "--method", "grad_cam",
            "--target", "3", "--metrics", "sanity,road,srg,smooth_mprt,efficient_mprt", "--steps", "8"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    (r,) = [json.loads(line) for line in out.splitlines()]
    s = r["sanity"]
    assert s["blocks"] == ["inception5b", "inception5a", "inception4e", "inception4d", "inception4c"]
    assert len(s["correlations"]) == 5 and isinstance(s["flagged"], bool) and "sanity_ms" in r["timings"]
    assert r["layer"] == "inception5b" and "inception5b, the last block" in err
    assert {"morf", "lerf", "combined", "interval", "reference_interval", "clears_reference"} <= set(r["road"])
    assert "road_ms" in r["timings"] and r["road"]["percentages"] == [50.0] and len(r["road"]["values"]) == 2
    assert r["road"]["combined"] == pytest.approx((r["road"]["lerf"] - r["road"]["morf"]) / 2, abs=2e-6)
    for name, references in (("srg", 5), ("smooth_mprt", 2), ("efficient_mprt", 1)):
        m = r[name]
        assert len(m["reference"]) == references and f"{name}_ms" in r["timings"], name
        low, high = m["interval"]
        assert low <= m["value"] <= high and isinstance(m["clears_reference"], bool)
    assert len(r["srg"]["values"]) == 1 and len(r["srg"]["morf_curve"]) == 9
    assert len(r["smooth_mprt"]["values"]) == len(r["efficient_mprt"]["values"]) == 2
    code, out, err = run(capsys, *args, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 1 and rows[0]["layer"] == "inception5b" and rows[0]["target"] == "3"
    sha = hashlib.sha256(corpus["weights"].read_bytes()).hexdigest()
    assert (rows[0]["model"], rows[0]["weights"], rows[0]["weights_sha256"]) == ("googlenet", r["provenance"]["weights"]["file"], sha)
    assert rows[0]["sanity_flagged"] == str(s["flagged"])
    assert float(rows[0]["road"]) == pytest.approx(r["road"]["combined"], abs=1e-6)
    for name in ("srg", "smooth_mprt", "efficient_mprt"):
        assert float(rows[0][name]) == pytest.approx(r[name]["value"], abs=1e-6)
        assert rows[0][f"{name}_clears"] == str(r[name]["clears_reference"])
    last = s["correlations"][-1]
    assert (rows[0]["sanity_last"] == "") if last is None else float(rows[0]["sanity_last"]) == pytest.approx(last)


@pytest.mark.parametrize("args, words", [
    (["--method", "gradcam"], "unknown method gradcam"),
    (["--method", "grad_cam", "--layer", "inception9z"], "no block or node"),
    (["--method", "grad_cam", "--layer", "inception4e/7"], "has 4 branch"),
    (["--method", "saliency", "--metrics", "speed"], "unknown metric speed"),
    (["--method", "saliency", "--target", "1000"], "1000 classes"),
])
def test_usage_errors_exit_2_with_one_line(corpus, capsys, args, words):
    code, out, err = run(capsys, corpus["good"][0], "--model", "googlenet", "--weights", corpus["weights"], *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err, err


def _plain_saliency(path: str, target: int, device: str = "cpu") -> np.ndarray:
    """The reference: torchvision's preprocessing, the plain model on `device`, captum's Saliency on it."""
    model = calibrated_model("googlenet").to(device)
    x = get_spec("googlenet").transforms()(Image.open(path).convert("RGB")).unsqueeze(0).to(device)
    return Saliency(model).attribute(x.requires_grad_(True), target=target, abs=True)[0].amax(0).cpu().numpy()


def test_device_cpu_computes_there(corpus, capsys, tmp_path):
    code, out, err = run(capsys, corpus["good"][0], "--model", "googlenet", "--weights", corpus["weights"],
                         "--method", "saliency", "--device", "cpu", "--metrics", "deletion", "--steps", "2",
                         "-o", tmp_path)
    assert code == 0, err
    (r,) = [json.loads(line) for line in out.splitlines()]
    assert r["provenance"]["device"] == "cpu" and len(r["deletion"]["curve"]) == 3
    np.testing.assert_allclose(np.load(r["npy"]), _plain_saliency(r["path"], r["target"]), rtol=1e-3, atol=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_a_gpu_is_one_line_and_exit_1(corpus, capsys):
    code, out, err = run(capsys, corpus["good"][0], "--model", "googlenet", "--weights", corpus["weights"],
                         "--method", "saliency", "--device", "cuda")
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--device cuda" in err and "CUDA" in err, err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_cuda_computes_maps_and_metrics_on_the_gpu(corpus, capsys, tmp_path):
    code, out, err = run(capsys, corpus["good"][1], "--model", "googlenet", "--weights", corpus["weights"],
                         "--method", "saliency,grad_cam", "--device", "cuda", "--metrics", "deletion,insertion",
                         "--steps", "4", "-o", tmp_path)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["provenance"]["device"] for r in records] == ["cuda", "cuda"]
    sal = records[0]
    # The GPU's map against the plain model's Saliency on the CPU: full float32 on the GPU (with TF32
    # convolutions, torch's default, the correlation was 0.96 on an H100).
    ref = _plain_saliency(sal["path"], sal["target"])
    heat = np.load(sal["npy"])
    assert np.corrcoef(heat.ravel(), ref.ravel())[0, 1] > 0.999
    model = calibrated_model("googlenet")
    x = get_spec("googlenet").transforms()(Image.open(sal["path"]).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        p = float(torch.softmax(model(x), 1)[0, sal["target"]])
    assert sal["deletion"]["curve"][0] == pytest.approx(p, rel=1e-3)


def test_the_methods_of_an_image_share_one_random_reference(corpus, capsys, tmp_path, monkeypatch):
    """The random-order curves do not depend on the map: the second method's curves reuse the first's
    (and a second image gets its own)."""
    from explorer.core.attribution import faithfulness

    real, given = faithfulness.faithfulness_curves, []

    def spy(*args, random_scores=None, **kwargs):
        given.append(random_scores)
        return real(*args, random_scores=random_scores, **kwargs)

    monkeypatch.setattr(faithfulness, "faithfulness_curves", spy)
    code, out, err = run(capsys, *corpus["good"], "--model", "googlenet", "--weights", corpus["weights"],
                         "--method", "saliency,grad_cam", "--metrics", "deletion,insertion", "--steps", "3",
                         "--device", "cpu", "-o", tmp_path)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [g is None for g in given] == [True, False, True, False]
    for first, second in (records[0:2], records[2:4]):
        for kind in ("deletion", "insertion"):
            assert second[kind]["random_curve"] == first[kind]["random_curve"]
            assert second[kind]["curve"] != first[kind]["curve"]
    assert records[0]["deletion"]["random_curve"] != records[2]["deletion"]["random_curve"]


def test_records_carry_the_classifiers_provenance_block(corpus, capsys):
    """attribute --format json: one array; each record names what made it, as classify's records do."""
    args = [corpus["good"][0], "--model", "googlenet", "--method", "saliency", "--device", "cpu"]
    code, out, err = run(capsys, *args, "--weights", corpus["weights"], "--format", "json")
    (r,) = json.loads(out)
    sha = hashlib.sha256(corpus["weights"].read_bytes()).hexdigest()
    assert code == 0 and r["provenance"]["weights"] == {"file": str(corpus["weights"].resolve()), "sha256": sha}
    assert main(["classify", str(corpus["good"][0]), "--model", "googlenet", "--weights", str(corpus["weights"]),
                 "--device", "cpu", "--format", "jsonl"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"] == r["provenance"]
    code, out, err = run(capsys, *args, "--weights", "none")
    assert code == 0 and json.loads(out)["provenance"]["weights"] == "random"  # jsonl, the default
