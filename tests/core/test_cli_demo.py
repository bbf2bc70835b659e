"""The command line on the demo task: draw-shapes writes drawn images with their masks, and attribute runs on
shapes_inception without --weights, with honest verdicts and, given --masks, the localisation of every map."""

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.cli import main
from explorer.core.attribution.localisation import localise
from explorer.core.demo.drawing import draw_images
from explorer.core.model.weights import UNLEARNED_CAVEAT

_SEED = 31  # any seed but the training's (0) and the evaluation's


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A folder of three drawn images and their masks, as draw-shapes writes them."""
    folder = tmp_path_factory.mktemp("shapes")
    assert main(["draw-shapes", str(folder), "--count", "3", "--seed", str(_SEED)]) == 0
    return folder


def test_draw_shapes_writes_the_generator_s_images_and_masks(tmp_path, capsys):
    code, out, err = run(capsys, "draw-shapes", tmp_path, "--count", 4, "--seed", _SEED)
    assert code == 0 and err == ""
    lines = [line.split("\t") for line in out.splitlines()]
    drawn = draw_images(4, _SEED)
    assert [c for _, _, c in lines] == [d.class_name for d in drawn] == ["circle", "square", "triangle", "star"]
    for (image, mask, _), d, i in zip(lines, drawn, range(4)):
        assert image == str(tmp_path / "images" / f"{i:04d}-{d.class_name}.png")
        assert mask == str(tmp_path / "masks" / f"{i:04d}-{d.class_name}.png")
        np.testing.assert_array_equal(np.asarray(Image.open(image)), d.image)
        np.testing.assert_array_equal(np.asarray(Image.open(mask)) > 0, d.mask)
    assert run(capsys, "draw-shapes", tmp_path, "--count", 0)[0] == 2
    (tmp_path / "file").write_text("x")
    assert run(capsys, "draw-shapes", tmp_path / "file")[0] == 2


def test_attribute_on_the_demo_model_with_masks(shapes, tmp_path, capsys):
    """No --weights: the shipped ones. Each record carries the localisation of its map against the mask (the same
    as localise on the map written to the .npy), the curves' verdicts against five random orders and a sanity
    verdict that may pass: the weights were learned. Without --deletion-substrate, deletion ends on the image
    blurred, as in the window (blurred here by scipy; the plain network's probability of it); with zero, the CSV
    says so."""
    from scipy.ndimage import gaussian_filter

    from explorer.core.demo.training import network_input
    from explorer.core.model.loading import load_model

    code, out, err = run(capsys, "attribute", shapes / "images", "--model", "shapes_inception", "--method",
                         "grad_cam,saliency", "--metrics", "deletion,insertion,sanity", "--steps", 5,
                         "--masks", shapes / "masks", "--device", "cpu", "-o", tmp_path)
    assert code == 0, err
    assert "random weights" not in err
    records = [json.loads(line) for line in out.splitlines()]
    drawn = draw_images(3, _SEED)
    net = load_model("shapes_inception").module.eval()
    assert len(records) == 6
    for r in records:
        d = drawn[int(r["path"].rsplit("/", 1)[1][:4])]
        assert r["label"] == d.class_name and r["weights_learned"] is True and "caveat" not in r
        heat = np.load(r["npy"])
        expected = localise(heat, d.mask)
        assert r["localisation"]["pointing"] == expected.pointing
        assert r["localisation"]["inside_share"] == pytest.approx(expected.inside_share, abs=1e-6)
        for kind in ("deletion", "insertion"):
            c = r[kind]
            assert len(c["random_aucs"]) == 5 and c["random_spread"] == [min(c["random_aucs"]), max(c["random_aucs"])]
            low, high = c["random_spread"]
            assert c["better_than_random"] is (c["auc"] < low - 1e-3 if kind == "deletion" else c["auc"] > high + 1e-3)
        assert not r["sanity"]["verdict"].startswith("changes")
        x = network_input(d.image[None])[0].numpy()
        blurred = np.stack([gaussian_filter(c, 3.2, mode="mirror", truncate=10 / 3.2) for c in x])  # σ = 64 / 20
        with torch.no_grad():
            p = torch.softmax(net(torch.from_numpy(np.stack([blurred, np.zeros_like(x)]))), 1)[:, d.label].tolist()
        # the image blurred and the mean colour can be told apart (the demo model learnt both as no evidence)
        assert abs(p[0] - p[1]) > 1e-4
        assert r["deletion"]["curve"][-1] == pytest.approx(p[0], abs=1e-5) and r["deletion"]["substrate"] == "blur"
    code, out, err = run(capsys, "attribute", shapes / "images" / "0001-square.png", "--model", "shapes_inception",
                         "--method", "grad_cam", "--metrics", "deletion", "--steps", 5, "--masks", shapes / "masks",
                         "--deletion-substrate", "zero", "--device", "cpu", "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(out))
    (r,) = [r for r in records if r["path"].endswith("0001-square.png") and r["method"] == "grad_cam"]
    assert row["pointing"] == str(r["localisation"]["pointing"])
    assert float(row["inside_share"]) == pytest.approx(r["localisation"]["inside_share"], abs=1e-6)
    assert row["deletion_better_than_random"] in ("True", "False") and row["insertion_better_than_random"] == ""
    assert row["deletion_substrate"] == "zero"


def test_attribute_with_random_weights_says_the_maps_mean_nothing(shapes, capsys):
    """--weights none: every record and the stderr say the network has learned nothing, and the sanity check is
    never a pass that 'depends on the learned weights'."""
    code, out, err = run(capsys, "attribute", shapes / "images" / "0000-circle.png", "--model", "shapes_inception",
                         "--weights", "none", "--method", "saliency", "--metrics", "sanity", "--device", "cpu")
    assert code == 0, err
    assert UNLEARNED_CAVEAT in err
    (r,) = [json.loads(line) for line in out.splitlines()]
    assert r["weights_learned"] is False and r["caveat"] == UNLEARNED_CAVEAT
    assert "learned weights" not in r["sanity"]["verdict"] and not r["sanity"]["verdict"].startswith("passes")


def test_masks_that_are_missing_or_do_not_fit_give_no_localisation(shapes, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "0001-square.png")  # half the image's size
    images = shapes / "images"
    code, out, err = run(capsys, "attribute", images / "0000-circle.png", images / "0001-square.png", "--model",
                         "shapes_inception", "--method", "saliency", "--masks", masks, "--device", "cpu")
    assert code == 0, err
    assert [json.loads(line)["localisation"] for line in out.splitlines()] == [None, None]
    assert "no mask" in err and "0000-circle" in err and "is 32×32, the image 64×64" in err
    assert run(capsys, "attribute", shapes / "images", "--model", "shapes_inception", "--method", "saliency", "--masks",
               shapes / "images" / "0000-circle.png")[0] == 2


def test_integrated_gradients_starts_from_black_in_the_model_s_own_input(shapes, tmp_path, capsys):
    """attribute's IG map of a drawn image is the one from an all-black image in the demo model's [-1, 1] input (-1
    everywhere), not from ImageNet's black."""
    import torch

    from explorer.core.attribution.methods import attribute
    from explorer.core.demo.training import network_input
    from explorer.core.graph.capture import CaptureModel
    from explorer.core.model.graphs import zoo_block_graph
    from explorer.core.model.loading import load_model

    image = shapes / "images" / "0001-square.png"
    code, out, err = run(capsys, "attribute", image, "--model", "shapes_inception", "--method",
                         "integrated_gradients", "--target", 1, "--device", "cpu", "-o", tmp_path)
    assert code == 0, err
    (r,) = [json.loads(line) for line in out.splitlines()]
    cm = CaptureModel(load_model("shapes_inception").module, zoo_block_graph("shapes_inception"))
    x = network_input(np.array(Image.open(image))[None])
    expected = attribute(cm, x, "integrated_gradients", 1, baseline=-torch.ones_like(x)).heatmap
    imagenet_black = attribute(cm, x, "integrated_gradients", 1).heatmap  # ImageNet's convention: about -2.1
    scale = np.abs(expected).max()
    assert np.abs(np.load(r["npy"]) - expected).max() < 1e-3 * scale  # float rounding (two preprocessing paths)
    assert np.abs(imagenet_black - expected).max() > 0.1 * scale
