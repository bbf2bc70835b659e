"""Odd arguments and odd models (issue 29, round 2): each ends in one clear error line with the right exit
status (2: a usage error, 1: a model that cannot do the job), or works and matches a computation made
here with plain torch, torchvision or timm."""

from __future__ import annotations

import json
import textwrap
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from explorer.cli import main
from explorer.core.model.anycnn import OpenModelError, open_model
from explorer.core.microscope.featurevis import parse_channels
from tests.netutil import write_weights

#: A plain CNN, no blocks; build() seeds torch, so the test builds the very network the CLI opens.
PLAIN_CNN = textwrap.dedent("""
    import torch, torch.nn as nn

    def build():
        torch.manual_seed(29)
        return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4, padding=2), nn.ReLU(),
                             nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
""")

#: One two-branch block (concatenated) and a classifier head.
BLOCK_CNN = textwrap.dedent("""
    import torch, torch.nn as nn

    class TwoBranch(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(8, 4, 1)
            self.b = nn.Conv2d(8, 4, 3, padding=1)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=4)
            self.block = TwoBranch()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.block(self.stem(x))), 1))

    def build():
        return Net()
""")

#: A conv stack whose output is a feature map, not class scores.
FEATURE_MAP = textwrap.dedent("""
    import torch.nn as nn

    def build():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
""")

#: No spatial map anywhere after the input: nothing for a CAM method to look at.
FLAT = textwrap.dedent("""
    import torch.nn as nn

    def build():
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 10))
""")


def cli(capsys, *args):
    """(exit status, stdout, the error lines of stderr) of `inception-explorer ARGS`; warnings and notes
    are set aside, and a traceback on stderr fails the test at once."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if not line.startswith(("inception-explorer: warning:",
                                                                       "inception-explorer: note:"))]
    return code, out, errors


def one_error(errors, *words):
    assert len(errors) == 1 and errors[0].startswith("inception-explorer: error: "), errors
    assert all(w in errors[0] for w in words), errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile_args")
    made = {}
    for name, source in (("plain.py", PLAIN_CNN), ("block.py", BLOCK_CNN), ("fmap.py", FEATURE_MAP),
                         ("flat.py", FLAT)):
        made[name] = folder / name
        made[name].write_text(source)
    rng = np.random.default_rng(29)
    made["image"] = folder / "noise.png"
    Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(made["image"])
    return made


def load_file(path):
    scope = {}
    exec(compile(path.read_text(), str(path), "exec"), scope)
    return scope["build"]().eval()


def imagenet_input(path) -> torch.Tensor:
    """torchvision's own ImageNet evaluation transform (resize 256, crop 224), as an opened model's."""
    tf = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()
    return tf(Image.open(path).convert("RGB")).unsqueeze(0)


# -- branch numbers and channel ranges --------------------------------------------------------------


@pytest.mark.parametrize("command", ["attribute", "visualize"])
@pytest.mark.parametrize("branch", ["²", "1" * 5000])
def test_a_branch_that_is_not_an_ascii_number_is_a_usage_error(files, capsys, tmp_path, command, branch):
    # '²'.isdigit() is True but int('²') fails; 5000 digits are beyond int()'s limit for a string.
    if command == "attribute":
        args = ["attribute", files["image"], "--model", files["block.py"], "--weights", "none",
                "--method", "grad_cam", "--layer", f"block/{branch}"]
    else:
        args = ["visualize", files["block.py"], f"block/{branch}", "--weights", "none", "--steps", "1",
                "--channels", "0", "-o", tmp_path]
    code, out, errors = cli(capsys, *args)
    assert code == 2 and out == ""
    one_error(errors, "block has 2 branch(es); give a number from 1 to 2")


def test_channel_ranges_are_bounded_before_they_are_expanded(files, capsys, tmp_path):
    t0 = time.perf_counter()
    code, out, errors = cli(capsys, "visualize", files["block.py"], "block", "--channels", "0-99999999999",
                            "--weights", "none", "-o", tmp_path)
    assert code == 2 and out == ""
    one_error(errors, "--channels", "0-99999999999")
    with pytest.raises(ValueError, match="this layer has 8 channels"):
        parse_channels("3,5-99999999999", 8)
    with pytest.raises(ValueError, match="give numbers"):
        parse_channels("²")
    with pytest.raises(ValueError, match="beyond any layer"):
        parse_channels("0-" + "9" * 5000)
    assert time.perf_counter() - t0 < 5  # refused, not expanded
    assert parse_channels("0-2, 7", 8) == [0, 1, 2, 7]  # what is in range still works


# -- timm names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ref, words", [("timm:", "no model name after 'timm:'"),
                                        ("timm:resnet1*", "'resnet1*': give one exact name, not a pattern"),
                                        ("timm:*", "'*': give one exact name"),
                                        ("timm:resnet18?", "not a pattern")])
def test_timm_names_are_exact_names(capsys, ref, words):
    pytest.importorskip("timm")
    code, out, errors = cli(capsys, "trace", ref)
    assert code == 2 and out == ""
    one_error(errors, words)
    with pytest.raises(OpenModelError):
        open_model(ref)


def test_a_vision_transformer_traces_and_classifies_and_refuses_attribution_in_one_line(capsys, tmp_path, files):
    timm = pytest.importorskip("timm")
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    ref = "timm:vit_tiny_patch16_224"
    # Shapes: those of hooks on the real model's forward (the graph is its module tree).
    code, out, errors = cli(capsys, "trace", ref, "--format", "json")
    assert code == 0 and not errors
    shapes = {n["name"]: tuple(n["output_shape"]) for n in json.loads(out)["nodes"]}
    real = {}
    for name in ("patch_embed", "blocks", "head"):
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, n=name: real.__setitem__(n, tuple(o.shape[1:])))
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert {n: shapes[n] for n in real} == real == {"patch_embed": (196, 192), "blocks": (197, 192), "head": (1000,)}

    # Classification: the plain model on timm's own preprocessing, with the same weights.
    weights = write_weights(model, tmp_path / "vit.safetensors")
    code, out, errors = cli(capsys, "classify", files["image"], "--model", ref, "--weights", weights,
                            "--format", "json", "--device", "cpu")
    assert code == 0 and not errors
    (record,) = json.loads(out)  # one JSON document: an array of the records
    x = create_transform(**resolve_data_config({}, model=model))(Image.open(files["image"]).convert("RGB"))
    with torch.no_grad():
        probs = model(x[None]).softmax(1)[0]
    top = probs.topk(5)
    assert [p["index"] for p in record["top"]] == top.indices.tolist()
    np.testing.assert_allclose([p["prob"] for p in record["top"]], top.values.numpy(), rtol=1e-4)

    # Attribution probes the traced network's layers, which a module tree does not have: one line.
    code, out, errors = cli(capsys, "attribute", files["image"], "--model", ref, "--weights", weights,
                            "--method", "saliency")
    assert code == 1 and out == ""
    one_error(errors, ref, "cannot probe its layers", "cannot be followed")


# -- models that cannot do the job ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["classify", "attribute"])
def test_a_model_whose_output_is_a_feature_map_cannot_classify(files, capsys, command):
    args = [command, files["image"], "--model", files["fmap.py"], "--weights", "none"]
    code, out, errors = cli(capsys, *args, *(["--method", "saliency"] if command == "attribute" else []))
    assert code == 1 and out == ""
    one_error(errors, "fmap.py", "output is a 4×224×224 map, not class scores")


def test_the_classifier_names_a_feature_map_output_for_the_window(files):
    # The window classifies through Classifier.classify_captured; a ValueError there is shown as its message.
    from explorer.core.classify.inference import Classifier, NotAClassifierError
    from explorer.core.model.graphs import opened_model
    from explorer.core.model.loading import load_model

    spec, graph = opened_model(str(files["fmap.py"]))
    clf = Classifier(load_model(spec, weights="none"), "cpu", graph=graph)
    with pytest.raises(NotAClassifierError, match="4×224×224 map, not class scores"):
        clf.classify_captured(str(files["image"]))
    assert issubclass(NotAClassifierError, ValueError)


def test_a_model_that_does_not_run_at_its_native_size_is_one_line(capsys, tmp_path):
    path = tmp_path / "wrongsize.py"
    path.write_text("import torch.nn as nn\ndef build():\n"
                    "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(10, 10))\n")
    code, out, errors = cli(capsys, "trace", path)
    assert code == 1 and out == ""
    one_error(errors, "does not run at its native size (224, 224)", "expects 10 input features")


# -- attribution on networks without blocks ---------------------------------------------------------


def test_gradient_methods_and_cams_work_on_a_plain_cnn(files, capsys, tmp_path):
    code, out, errors = cli(capsys, "attribute", files["image"], "--model", files["plain.py"], "--weights", "none",
                            "--method", "saliency,grad_cam,integrated_gradients,occlusion", "--device", "cpu",
                            "-o", tmp_path)
    assert code == 0 and not errors
    records = {r["method"]: r for r in map(json.loads, out.splitlines())}
    assert set(records) == {"saliency", "grad_cam", "integrated_gradients", "occlusion"}
    assert all(r["branch_shares"] == {} for r in records.values())  # no blocks, no branches to weigh

    model = load_file(files["plain.py"])
    x = imagenet_input(files["image"]).requires_grad_(True)
    activations = {}
    model[3].register_forward_hook(lambda m, i, o: activations.__setitem__("a", o))
    logits = model(x)
    target = int(logits.argmax(1))
    assert all(r["target"] == target for r in records.values())
    score = logits[0, target]
    grad_x, grad_a = torch.autograd.grad(score, [x, activations["a"]])

    # Saliency: |d score / d input|, the largest over the colour channels.
    np.testing.assert_allclose(np.load(records["saliency"]["npy"]), grad_x[0].abs().amax(0).numpy(),
                               rtol=1e-4, atol=1e-8)
    # Grad-CAM at the last node with a spatial map (the ReLU after the second convolution, "3"):
    # channel weights = mean gradient, ReLU of the weighted sum, upsampled bilinearly to the input.
    assert records["grad_cam"]["layer"] == "3"
    a = activations["a"].detach()
    cam = (grad_a.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True).clamp(min=0)
    ref = F.interpolate(cam, size=(224, 224), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(np.load(records["grad_cam"]["npy"]), ref.numpy(), rtol=1e-4, atol=1e-7)


def test_torchvision_alexnet_attributes_without_blocks(files, capsys):
    code, out, errors = cli(capsys, "attribute", files["image"], "--model", "torchvision:alexnet", "--weights",
                            "none", "--method", "saliency,grad_cam", "--device", "cpu")
    assert code == 0 and not errors
    records = {r["method"]: r for r in map(json.loads, out.splitlines())}
    assert records["saliency"]["layer"] is None
    # AlexNet's last map is its 6×6 pool (torchvision's avgpool), the features a CAM reads.
    assert records["grad_cam"]["layer"] == "avgpool"


def test_cam_methods_on_a_model_without_any_spatial_map_is_one_line(files, capsys):
    code, out, errors = cli(capsys, "attribute", files["image"], "--model", files["flat.py"], "--weights", "none",
                            "--method", "grad_cam")
    assert code == 1 and out == ""
    one_error(errors, "spatial map", "saliency")
    code, out, errors = cli(capsys, "attribute", files["image"], "--model", files["flat.py"], "--weights", "none",
                            "--method", "grad_cam", "--layer", "nope")
    assert code == 2
    one_error(errors, "no block or node 'nope'; nodes: 0, 1")


# -- a model file that exits ------------------------------------------------------------------------


@pytest.mark.parametrize("source, words", [
    ("import sys\nsys.exit(0)\n", "fails to run: it called sys.exit(0)"),
    ("import sys\ndef build():\n    sys.exit(0)\n", "build() called sys.exit(0)"),
    ("import sys\ndef build():\n    sys.exit()\n", "build() called sys.exit()"),
    ("def build():\n    raise SystemExit('bye')\n", "build() called sys.exit('bye')"),
    ("class Odd(BaseException):\n    pass\ndef build():\n    raise Odd('strange')\n", "build() raised Odd: strange"),
])
def test_a_model_file_that_exits_is_a_failure_not_a_success(files, capsys, tmp_path, source, words):
    path = tmp_path / "quitter.py"
    path.write_text(source)
    for command in (["trace", path], ["classify", files["image"], "--model", path, "--weights", "none"]):
        code, out, errors = cli(capsys, *command)
        assert code == 2 and out == ""
        one_error(errors, "quitter.py", words)


def test_ctrl_c_in_a_model_file_still_interrupts(tmp_path):
    path = tmp_path / "interrupted.py"
    path.write_text("def build():\n    raise KeyboardInterrupt\n")
    spec = open_model(path)
    with pytest.raises(KeyboardInterrupt):
        spec.build()
    path.write_text("raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        open_model(path)
    # ... while a SystemExit at import is an error of opening it.
    path.write_text("raise SystemExit(4)\n")
    with pytest.raises(OpenModelError, match=r"called sys.exit\(4\)"):
        open_model(path)
