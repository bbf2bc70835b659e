"""The demo model's shipped weights: the file the zoo records, loaded through the checked path, and a network
that has learned — classified through the app's own path on images drawn with a seed training never used."""

import json
import shutil
import tomllib
from dataclasses import replace
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.cli import main
from explorer.core.demo.drawing import draw_images
from explorer.core.demo.task import SHAPE_CLASSES, SHIPPED_WEIGHTS
from explorer.core.demo.training import EVAL_SEED, build_network, evaluate
from explorer.core.model.loading import load_model
from explorer.core.model.weights import file_sha256, read_state_dict, safetensors_metadata
from explorer.core.model.zoo import ShippedWeights, get_spec

#: Images no training run of the shipped weights drew: neither their seed nor the evaluation's.
_UNSEEN_SEED = 2424


def test_the_zoo_records_the_shipped_file_and_the_package_ships_it():
    shipped = get_spec("shapes_inception").shipped_weights
    assert shipped.path == SHIPPED_WEIGHTS and shipped.path.is_file()
    assert file_sha256(shipped.path) == shipped.sha256
    assert shipped.path.stat().st_size < 4 * 2 ** 20  # a few MB at most
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = pyproject["tool"]["setuptools"]
    assert "explorer.core.demo" in setuptools["packages"]
    assert any(fnmatch(shipped.path.name, p) for p in setuptools["package-data"]["explorer.core.demo"])


def test_loads_by_default_without_a_weights_file_and_without_pickle():
    loaded = load_model("shapes_inception")
    assert loaded.weights.kind == "pretrained" and not loaded.weights.is_random
    assert "shipped with the explorer" in loaded.weights.source
    assert loaded.categories == list(SHAPE_CLASSES)
    from safetensors.torch import load_file  # safetensors holds tensors only: nothing in it can run

    on_disk = load_file(str(SHIPPED_WEIGHTS))
    assert on_disk.keys() == loaded.module.state_dict().keys()
    assert all(torch.equal(v, loaded.module.state_dict()[k]) for k, v in on_disk.items())
    meta = safetensors_metadata(SHIPPED_WEIGHTS)
    assert int(meta["seed"]) != _UNSEEN_SEED and int(meta["eval_seed"]) == EVAL_SEED != _UNSEEN_SEED


def test_a_damaged_shipped_file_gives_random_weights_and_says_why(tmp_path):
    damaged = tmp_path / SHIPPED_WEIGHTS.name
    shutil.copyfile(SHIPPED_WEIGHTS, damaged)
    with open(damaged, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    spec = get_spec("shapes_inception")
    spec = replace(spec, shipped_weights=ShippedWeights(damaged, spec.shipped_weights.sha256))
    state = load_model(spec).weights
    assert state.is_random and "not the one this version ships" in state.reason
    missing = replace(spec, shipped_weights=ShippedWeights(tmp_path / "gone.safetensors", "0" * 64))
    assert "missing" in load_model(missing).weights.reason


def test_classify_on_unseen_drawn_images_is_at_least_95_percent(tmp_path, capsys):
    """120 images of a seed training never saw, written as PNGs and classified by `classify`: the app's
    decode, preprocessing and (batch-norm folded) network, compared with the generator's labels."""
    drawn = draw_images(120, _UNSEEN_SEED)
    paths = []
    for i, d in enumerate(drawn):
        paths.append(tmp_path / f"{i:03d}.png")
        Image.fromarray(d.image).save(paths[-1])
    assert main(["classify", *map(str, paths), "--model", "shapes_inception", "--format", "json", "--top", "1",
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "random weights" not in captured.err
    results = {Path(r["path"]).name: r["top"][0]["label"] for r in json.loads(captured.out)}
    predicted = [results[p.name] for p in paths]
    truth = [d.class_name for d in drawn]
    accuracy = np.mean([p == t for p, t in zip(predicted, truth)])
    assert accuracy >= 0.95, list(zip(predicted, truth))


@pytest.mark.slow
def test_the_recorded_accuracy_is_what_the_weights_score():
    """The accuracy in the file's metadata (and in `models`) is measured again here, on the same images."""
    meta = safetensors_metadata(SHIPPED_WEIGHTS)
    model = build_network()
    model.load_state_dict(read_state_dict(SHIPPED_WEIGHTS))
    model.eval()
    assert evaluate(model, int(meta["eval_images"]), int(meta["eval_seed"])) == pytest.approx(
        float(meta["accuracy"]), abs=5e-5)
    assert float(meta["accuracy"]) >= 0.97


def test_models_lists_it_with_its_measured_accuracy(capsys):
    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    meta = safetensors_metadata(SHIPPED_WEIGHTS)
    expected = f"accuracy {100 * float(meta['accuracy']):.1f} % on {meta['eval_images']} fresh images"
    assert "shipped with the explorer" in rows["shapes_inception"] and expected in rows["shapes_inception"]
