"""Any CNN on the command line: bare torchvision/timm names, prefixed names and files, as the window opens
them; unknown names get suggestions and exit 2."""

import json

import pytest
import torch
import torchvision
from PIL import Image

from explorer.cli import main
from explorer.core.model.zoo import random_seed


def _trace_json(capsys, ref, *extra):
    assert main(["trace", ref, "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _residual_nodes(doc):
    return [n["name"] for n in doc["nodes"] if n["kind"] == "residual"]


def test_bare_torchvision_name_traces_with_torchvision_s_parameter_count(capsys):
    doc = _trace_json(capsys, "resnet18", "--size", "64")
    assert doc["model"] == "torchvision:resnet18"  # a bare name not in the zoo is torchvision's
    expected = sum(p.numel() for p in torchvision.models.resnet18().parameters())
    assert doc["total_params"] == expected
    assert _residual_nodes(doc) == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]


def test_timm_name_traces_with_timm_s_parameter_count(capsys):
    timm = pytest.importorskip("timm")
    doc = _trace_json(capsys, "timm:resnet18", "--size", "64")
    expected = sum(p.numel() for p in timm.create_model("resnet18", pretrained=False).parameters())
    assert doc["model"] == "timm:resnet18" and doc["total_params"] == expected
    assert len(_residual_nodes(doc)) == 8


def test_bare_name_only_timm_has_resolves_to_timm(capsys):
    pytest.importorskip("timm")
    doc = _trace_json(capsys, "resnet18d", "--size", "64")  # not a torchvision model
    assert doc["model"] == "timm:resnet18d"


def test_python_file_with_build_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "tiny.py"
    path.write_text("import torch.nn as nn\n"
                    "def build():\n"
                    "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),"
                    " nn.Linear(8, 10))\n")
    doc = _trace_json(capsys, str(path), "--size", "32")
    assert doc["total_params"] == 3 * 8 * 9 + 8 + 8 * 10 + 10


@pytest.mark.parametrize("argv", [["trace", "resnt18"], ["classify", "x.png", "--model", "resnt18"]])
def test_unknown_name_exits_2_with_close_names(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "unknown model 'resnt18'" in err and "torchvision:resnet18" in err
    assert "timm:NAME" in err and "models --all" in err


def test_models_all_lists_what_opens_by_name(capsys):
    assert main(["models", "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("googlenet ")
    assert "torchvision:resnet18" in lines and "torchvision:inception_v3" in lines
    pytest.importorskip("timm")
    assert "timm:inception_v4" in lines


def test_models_names_where_the_weights_come_from(capsys):
    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "Hugging Face Hub timm/inception_v4.tf_in1k" in rows["inception_v4"]
    assert "Hugging Face Hub timm/inception_resnet_v2.tf_in1k" in rows["inception_resnet_v2"]
    assert "none published" in rows["inception_resnet_v1"]
    assert "IMAGENET1K_V1" in rows["googlenet"]


def test_classify_torchvision_model_with_random_weights(tmp_path, capsys):
    """classify torchvision:resnet18 --weights none: the same top-5 as torchvision's own model with the
    same seeded weights and torchvision's own transform."""
    path = tmp_path / "small.png"
    g = torch.Generator().manual_seed(3)
    img = Image.fromarray((torch.rand(48, 64, 3, generator=g) * 255).to(torch.uint8).numpy())
    img.save(path)
    assert main(["classify", str(path), "--model", "torchvision:resnet18", "--weights", "none",
                 "--format", "json"]) == 0
    out = capsys.readouterr()
    assert "random weights" in out.err
    (doc,) = json.loads(out.out)  # --format json: one array
    assert doc["provenance"]["model"] == "torchvision:resnet18" and doc["provenance"]["weights"] == "random"

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_seed("torchvision:resnet18"))
        model = torchvision.models.resnet18().eval()
    x = torchvision.models.ResNet18_Weights.DEFAULT.transforms()(img.convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    top = probs.topk(5)
    assert [t["index"] for t in doc["top"]] == top.indices.tolist()
    assert [t["prob"] for t in doc["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_window_launcher_refuses_an_unknown_name_before_qt(capsys):
    from explorer.launcher import main as launcher_main

    assert launcher_main(["gui", "--model", "resnt18"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "did you mean torchvision:resnet18" in err
