"""Hostile model files: a torch.export file that carries a pickle payload (in its sample inputs or its
weights), a graph node or a symbolic shape that names Python code, compiled code in the archive, an
archive that inflates a thousandfold, and files that are no model at all (random bytes, empty, cut, a
state dict). Each is refused with one line before torch reads it, and the payload never runs: each
payload here creates a marker file, whose absence is what the tests assert.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image

from explorer.cli import main
from explorer.core.model import archives
from explorer.core.model.anycnn import OpenModelError, open_model
from explorer.core.model.archives import ArchiveError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


class _Payload:
    """Unpickling this creates `marker`: the proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "net.pt2"
    torch.export.save(torch.export.export(_net(), (torch.randn(1, 3, 32, 32),)), str(path))
    return path


def _rewrite(src: Path, dst: Path, change) -> Path:
    """A copy of the archive `src` with each entry's bytes passed through change(name, data) (None drops it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename.split("/", 1)[1], zin.read(info))
            if data is not None:
                zout.writestr(info, data)
    return dst


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _evil_sample_inputs(src, tmp_path, marker):
    return _rewrite(src, tmp_path / "evil_inputs.pt2", lambda name, data: _saved(((_Payload(marker),), {}))
                    if name.startswith("data/sample_inputs/") else data)


def _evil_weights(src, tmp_path, marker):
    def change(name, data):
        if name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            config["config"]["0.weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        if name == "data/weights/weight_0":
            return _saved(_Payload(marker))
        return data

    return _rewrite(src, tmp_path / "evil_weights.pt2", change)


def _edited_graph(src, dst, edit):
    def change(name, data):
        if name.startswith("models/"):
            program = json.loads(data)
            edit(program)
            return json.dumps(program).encode()
        return data

    return _rewrite(src, dst, change)


def _evil_target(src, tmp_path, marker):
    def edit(program):
        program["graph_module"]["graph"]["nodes"][2]["target"] = "torch.serialization.os.mkdir"

    return _edited_graph(src, tmp_path / "evil_target.pt2", edit)


def _evil_expression(src, tmp_path, marker):
    def edit(program):
        program["range_constraints"] = {f"__import__('os').mkdir('{marker}')": {"min_val": 0, "max_val": 1}}

    return _edited_graph(src, tmp_path / "evil_expr.pt2", edit)


def _compiled_code(src, tmp_path, marker):
    with zipfile.ZipFile(src) as z:
        top = z.namelist()[0].split("/", 1)[0]
    dst = _rewrite(src, tmp_path / "aoti.pt2", lambda name, data: data)
    with zipfile.ZipFile(dst, "a") as z:
        z.writestr(f"{top}/data/aotinductor/model/model.so", b"\x7fELF" + bytes(64))
    return dst


HOSTILE_EXPORTS = {
    "sample inputs": (_evil_sample_inputs, "sample inputs hold Python objects"),
    "weights": (_evil_weights, "stored as a Python object"),
    "graph target": (_evil_target, "torch.serialization.os.mkdir"),
    "symbolic shape": (_evil_expression, "not plain arithmetic"),
    "compiled code": (_compiled_code, "aotinductor"),
}


@pytest.mark.parametrize("case", list(HOSTILE_EXPORTS))
def test_a_hostile_export_file_is_refused_and_its_payload_never_runs(exported, tmp_path, capsys, case):
    make, words = HOSTILE_EXPORTS[case]
    marker = tmp_path / "ran"
    path = make(exported, tmp_path, marker)
    with pytest.raises(OpenModelError, match="refused") as e:
        open_model(path)
    assert words in str(e.value) and "\n" not in str(e.value)
    image = tmp_path / "photo.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    for command in (["trace", str(path)], ["classify", str(image), "--model", str(path), "--weights", "none"]):
        assert main(command) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "refused" in err and "Traceback" not in err
    assert not marker.exists()


def test_torch_export_load_itself_would_run_the_payload(exported, tmp_path):
    """The guard is needed: torch's own loader runs the sample inputs' payload (it falls back to a full
    unpickle). If a torch release stops doing so, this test says the guard has become a second line only."""
    marker = tmp_path / "ran"
    path = _evil_sample_inputs(exported, tmp_path, marker)
    try:
        torch.export.load(str(path))
    except Exception:
        pass
    assert marker.exists()


def test_the_second_line_refuses_the_payload_even_unchecked(exported, tmp_path):
    """With the archive check skipped, loading under the guard still unpickles tensors only."""
    marker = tmp_path / "ran"
    path = _evil_sample_inputs(exported, tmp_path, marker)
    with pytest.raises(Exception), archives._only_tensor_pickles():
        torch.export.load(str(path))
    assert not marker.exists()
    assert torch.load is not None and "tensors_only" not in torch.load.__name__  # restored afterwards


def test_a_clean_export_file_opens_whatever_its_suffix_and_computes_the_networks_output(exported, tmp_path):
    x = torch.randn(1, 3, 32, 32)
    expected = _net()(x)
    renamed = tmp_path / "net.pt"  # content, not suffix, says what the file is
    renamed.write_bytes(exported.read_bytes())
    for path in (exported, renamed):
        spec = open_model(path)
        assert spec.native_size == (32, 32)
        torch.testing.assert_close(spec.build()(x), expected)


def _scripted(tmp_path) -> Path:
    path = tmp_path / "net.ts"
    torch.jit.script(_net()).save(str(path))
    return path


def test_an_archive_that_inflates_a_thousandfold_is_refused_before_torch_reads_it(tmp_path, monkeypatch):
    src = _scripted(tmp_path)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr(f"{zin.namelist()[0].split('/')[0]}/data/bomb", bytes(200 * 2**20))  # 200 MiB of zeros
    assert bomb.stat().st_size < 2**20

    def never(*_a, **_k):
        raise AssertionError("torch read the archive")

    monkeypatch.setattr(torch.jit, "load", never)
    with pytest.raises(OpenModelError, match=r"would inflate to 0\.2 GiB.*refused"):
        open_model(bomb)


def test_inflation_bound_counts_the_directory(tmp_path):
    """The bound is the sum of the directory's sizes: a big but real archive passes, ratio ~1."""
    path = tmp_path / "big.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("big/code/__torch__.py", b"")
        z.writestr("big/constants.pkl", b"")
        z.writestr("big/data/0", os.urandom(80 * 2**20))
    assert archives.read_archive(path).kind == "torchscript"
    assert archives.read_archive(path).inflated >= 80 * 2**20


NOT_MODELS = {
    "random bytes": (lambda d, ts: d.joinpath("r.pt").write_bytes(os.urandom(5000)), "not a TorchScript or torch.export file"),
    "empty": (lambda d, ts: d.joinpath("e.pt").write_bytes(b""), "is empty"),
    "cut TorchScript": (lambda d, ts: d.joinpath("c.pt").write_bytes(ts.read_bytes()[:3000]), "cut short"),
    "state dict": (lambda d, ts: torch.save(_net().state_dict(), d / "sd.pt"), "weights only (a state dict)"),
}


@pytest.mark.parametrize("case", list(NOT_MODELS))
def test_a_file_that_is_no_model_is_one_line_without_torchs_internals(tmp_path, capsys, case):
    write, words = NOT_MODELS[case]
    write(tmp_path, _scripted(tmp_path))
    path = next(p for p in tmp_path.iterdir() if p.name != "net.ts")
    assert main(["trace", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert "miniz" not in err and "RuntimeError" not in err and "Warning" not in err


def test_a_clean_torchscript_file_still_opens(tmp_path):
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(open_model(_scripted(tmp_path)).build()(x), _net()(x))


def test_archive_errors_are_value_errors_with_one_line(tmp_path):
    path = tmp_path / "x.pt2"
    path.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip directory
    with pytest.raises(ArchiveError) as e:
        archives.check_archive(path, "export")
    assert "\n" not in str(e.value)


def test_a_weights_file_that_inflates_a_thousandfold_is_refused_unread(tmp_path, monkeypatch):
    from explorer.core.model.weights import WeightsError, read_state_dict

    real = tmp_path / "w.pth"
    torch.save(_net().state_dict(), real)
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(real) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr(f"{zin.namelist()[0].split('/')[0]}/data/bomb", bytes(200 * 2**20))
    assert read_state_dict(real).keys() == _net().state_dict().keys()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch read the archive"))
    with pytest.raises(WeightsError, match="would inflate"):
        read_state_dict(bomb)
