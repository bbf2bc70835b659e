"""The command line: models, trace in every format, one-line errors with non-zero exits."""

import csv
import io
import json
import subprocess
import sys

import pytest
import torch

from explorer.cli import main
from explorer.core.shapes.trace import trace_shapes
from explorer.core.text import fmt_shape


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "googlenet" in out and "inception_v3" in out


def test_trace_json_schema_and_values(capsys, graph_of):
    assert main(["trace", "inception_v3", "--size", "320x480", "--batch", "2", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    trace = trace_shapes(graph_of("inception_v3"), (320, 480), batch=2)
    assert doc["model"] == "inception_v3" and doc["input"] == [2, 3, 320, 480]
    assert doc["total_params"] == trace.total_params and doc["total_macs"] == trace.total_macs
    assert doc["min_input"] == [75, 75]
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert list(nodes)[0] == "Conv2d_1a_3x3" and "input" not in nodes
    for name, n in nodes.items():
        assert {"name", "kind", "output_shape", "params", "macs", "receptive_field", "branches"} <= set(n)
        t = trace.nodes[name]
        assert n["output_shape"] == list(t.output_shape) and n["params"] == t.params and n["macs"] == t.macs
    b = nodes["Mixed_6b"]["branches"][1]
    assert {"label", "out_channels", "layers"} <= set(b)
    assert [layer["kernel"] for layer in b["layers"]] == [[1, 1], [1, 7], [7, 1]]
    assert set(b["layers"][0]) >= {"name", "type", "kernel", "stride", "out_channels"}
    assert b["layers"][0]["name"] == "Mixed_6b.branch7x7_1.conv"


def test_trace_table_csv_markdown(capsys, graph_of):
    assert main(["trace", "googlenet", "--size", "224"]) == 0
    table = capsys.readouterr().out
    assert "inception3a" in table and "256×28×28" in table and "1×1 16 → 3×3 32" in table
    assert main(["trace", "googlenet", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    trace = trace_shapes(graph_of("googlenet"), 224)
    assert [r["name"] for r in rows] == [n for n in trace.nodes if n != "input"]
    assert sum(int(r["macs"]) for r in rows if r["training_only"] == "False") == trace.total_macs
    assert main(["trace", "googlenet", "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("| name |") and md.count("\n| inception") == 9


@pytest.mark.parametrize("argv,needle", [
    (["trace", "resnet9000"], "unknown model"),
    (["trace", "googlenet", "--size", "10"], "maxpool3"),
    (["trace", "googlenet", "--size", "0"], "positive"),
    (["trace", "googlenet", "--size", "-4"], "positive"),
    (["trace", "googlenet", "--size", "big"], "not a number"),
    (["trace", "googlenet", "--batch", "0"], "batch"),
    (["trace", "googlenet", "--format", "xml"], "invalid choice"),
    (["trace"], "model"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_non_zero_with_one_line(capsys, argv, needle):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_console_script_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "explorer", "trace", "googlenet", "--size", "96x128",
                          "--format", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["input"] == [1, 3, 96, 128]
    bad = subprocess.run([sys.executable, "-m", "explorer", "trace", "googlenet", "--size", "12"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "15×15" in bad.stderr


def test_trace_defaults_to_the_models_own_input_size(capsys):
    """Without --size, `trace` uses the size the model's weights were made for (torchvision's crop size),
    as the window and `models` do: 299 for Inception v3, not 224."""
    import json

    from torchvision.models import Inception_V3_Weights

    crop = Inception_V3_Weights.DEFAULT.transforms().crop_size[0]
    assert main(["trace", "inception_v3", "--format", "json"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert main(["trace", "inception_v3", "--format", "json", "--size", str(crop)]) == 0
    assert json.loads(capsys.readouterr().out) == default
    assert main(["trace", "inception_v3", "--format", "json", "--size", "224"]) == 0
    assert json.loads(capsys.readouterr().out) != default
    assert str(crop) in json.dumps(default)


def test_help_lists_gui_and_describes_every_argument(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "gui" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["attribute", "--help"])
    out = capsys.readouterr().out
    assert "--model MODEL         a zoo name" in out
    with pytest.raises(SystemExit):
        main(["examples", "--help"])
    assert "a channel of that branch" in capsys.readouterr().out


def test_gui_help_is_the_windows_own(capsys, monkeypatch):
    """`gui --help` reaches the launcher's parser (its --offline option), not the command line's."""
    with pytest.raises(SystemExit) as e:
        main(["gui", "--help"])
    assert e.value.code == 0 and "--offline" in capsys.readouterr().out


def test_every_unit_the_trace_prints_is_defined_in_its_units_line(capsys):
    """A batch of 4096 at Inception v3's size reaches tera-multiply-adds: the units line says what T is."""
    import re

    assert main(["trace", "inception_v3", "--batch", "4096"]) == 0
    out = capsys.readouterr().out
    units = next(line for line in out.splitlines() if line.startswith("units:"))
    used = set(re.findall(r"\d (K|M|G|T|KiB|MiB|GiB|TiB)\b", out))
    assert "T" in used and "GiB" in used
    assert all(f"{u} = " in units for u in used), (used, units)


def _torchvision_inception_v3_params() -> tuple[int, int]:
    """(all parameters, those of AuxLogits) of torchvision's own Inception v3 (no values: meta device)."""
    from torchvision.models import inception_v3

    with torch.device("meta"):
        model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.AuxLogits.parameters())


def test_trace_at_75_counts_what_runs_and_says_why_the_head_cannot_below_the_table(capsys, graph_of):
    """At 75×75 Inception v3's AuxLogits cannot run (test_shapes: the real training forward fails): the params
    are torchvision's without AuxLogits, no figure is repeated as "with heads", and the reason is a line under
    the table, not text in the output column (which stays as wide as the widest shape)."""
    total, aux = _torchvision_inception_v3_params()
    assert main(["trace", "inception_v3", "--size", "75"]) == 0
    table, _, notes = capsys.readouterr().out.partition("\n\n")
    rule = table.splitlines()[1].split("  ")
    shapes = [fmt_shape(t.output_shape) for t in trace_shapes(graph_of("inception_v3"), 75) if t.output_shape]
    assert len(rule[3]) == max(len("output"), *map(len, shapes))
    aux_row = next(line for line in table.splitlines() if line.startswith("AuxLogits"))
    assert "avg_pool2d" not in table and " — " in aux_row
    params = next(line for line in notes.splitlines() if line.startswith("params"))
    assert f"params {total - aux:,} " in params and f"{total:,}" not in notes
    assert "no training-only head runs at 75×75" in params
    macs = next(line for line in notes.splitlines() if line.startswith("multiply-adds"))
    figure = macs.split()[1]
    assert macs.count(figure) == 1 and "with" not in macs
    reason = next(line for line in notes.splitlines() if "cannot run" in line)
    assert reason.startswith(f"AuxLogits (training only, {aux:,} params) cannot run at 75×75: avg_pool2d")


def test_trace_at_299_names_the_head_that_runs_with_its_parameters(capsys):
    total, aux = _torchvision_inception_v3_params()
    assert main(["trace", "inception_v3"]) == 0
    notes = capsys.readouterr().out.partition("\n\n")[2]
    params = next(line for line in notes.splitlines() if line.startswith("params"))
    assert f"params {total - aux:,} " in params and f"; {total:,} " in params
    assert "with AuxLogits (training only), which runs at 299×299" in params
    assert "cannot run" not in notes
