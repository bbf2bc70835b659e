"""Model archives opened without trusting them.

TorchScript and torch.export files are zip archives. Before torch reads one, Python's zipfile reads
its directory, which costs no inflation: an empty, cut or foreign file, an archive that would inflate
past `MAX_INFLATED_BYTES` (or `MAX_INFLATE_RATIO` times its size), and a state dict given as a model
are refused with one line.

`torch.export.load` trusts its file: it unpickles sample inputs and weights with `weights_only=False`
as a fallback, evaluates symbolic shapes with sympy (`eval`), and a graph node may name any callable
reachable from `torch`. `load_exported` therefore inspects the archive first and refuses, naming
the reason, every entry that is not the graph, raw tensors or tensor-only pickles; every graph target
outside torch's operator namespaces; every symbolic expression outside a small arithmetic grammar.
While torch then loads the file, unpickling anything but tensors is refused as well.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: No model archive may inflate to more than this (the largest Inception is ~0.25 GB of float32).
MAX_INFLATED_BYTES = 4 * 2**30
#: ... nor to more than this many times its size on disk, above `_SMALL_INFLATED` (torch stores
#: tensors uncompressed, so a real archive is close to 1×).
MAX_INFLATE_RATIO = 20
_SMALL_INFLATED = 64 * 2**20


class ArchiveError(ValueError):
    """A model archive that is refused before torch reads it; the message is one line."""


@dataclass(frozen=True)
class Archive:
    """The directory of a model archive: its entries below the top folder, and what kind it is."""

    names: tuple[str, ...]
    kind: str  # "torchscript" | "export" | "state_dict" | "legacy_export" | "unknown"
    inflated: int


def read_archive(path: str | os.PathLike) -> Archive:
    """The directory of the zip archive at `path`, checked for size; ArchiveError when it is no
    archive or would inflate too far."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ArchiveError(f"{path.name} is empty")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise ArchiveError(f"{path.name} is not a TorchScript or torch.export file (no readable zip directory:"
                           f" cut short, or another kind of file; {e})") from None
    return _archive(path.name, infos, size)


def _archive(label: str, infos: list[zipfile.ZipInfo], size: int) -> Archive:
    inflated = sum(i.file_size for i in infos)
    if inflated > MAX_INFLATED_BYTES or (inflated > _SMALL_INFLATED and inflated > MAX_INFLATE_RATIO * size):
        raise ArchiveError(f"{label} would inflate to {inflated / 2**30:.1f} GiB from {size / 2**20:.1f} MiB on disk;"
                           f" refused (at most {MAX_INFLATE_RATIO}× its size and {MAX_INFLATED_BYTES >> 30} GiB)")
    names = tuple(_below_top(i.filename) for i in infos)
    return Archive(names, _kind(names), inflated)


def _below_top(name: str) -> str:
    """An entry's name below the archive's one top folder (torch names it after the file)."""
    return name.split("/", 1)[1] if "/" in name else name


def _kind(names: tuple[str, ...]) -> str:
    present = set(names)
    if any(n.startswith("models/") and n.endswith(".json") for n in names):
        return "export"
    if "serialized_exported_program.json" in present:
        return "legacy_export"
    if any(n.startswith("code/") for n in names) and "constants.pkl" in present:
        return "torchscript"
    if "data.pkl" in present:
        return "state_dict"
    return "unknown"


def check_archive(path: str | os.PathLike, expected: str) -> Archive:
    """`read_archive`, and a one-line refusal when it is not of the `expected` kind."""
    archive = read_archive(path)
    if archive.kind == expected:
        return archive
    name = Path(path).name
    what = {"torchscript": "a TorchScript file", "export": "a torch.export file"}[expected]
    if archive.kind == "state_dict":
        raise ArchiveError(f"{name} holds weights only (a state dict), not a network: open the architecture"
                           " and give this file as its weights (--weights, or File → Open weights file…)")
    if archive.kind == "legacy_export":
        raise ArchiveError(f"{name} is a torch.export file in the format before torch 2.8, which is loaded by"
                           " unpickling; export the model again with this torch")
    other = {"torchscript": "a TorchScript file", "export": "a torch.export file"}.get(archive.kind)
    if other:
        raise ArchiveError(f"{name} is {other}, not {what}: give it the suffix "
                           + (".pt2" if archive.kind == "export" else ".pt or .ts"))
    raise ArchiveError(f"{name} is not {what} (a zip archive without {'code/' if expected == 'torchscript' else 'models/'})")


# -- torch.export ----------------------------------------------------------------------------------

#: The entries torch.export.save writes (below the top folder); anything else is refused.
_EXPORT_ENTRIES = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|version"
    r"|models/[^/]+\.json|data/weights/[^/]+|data/constants/[^/]+|data/sample_inputs/[^/]+\.pt|extra/[^/]+)"
)
#: Operator namespaces a graph node may call: torch's tensor operators.
_OP_NAMESPACES = ("aten", "prims", "quantized", "quantized_decomposed", "higher_order")
#: Plain Python operators torch.export puts in graphs (symbolic shape arithmetic, tuple items).
_PYTHON_OPS = {"getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pow", "eq", "ne", "lt",
               "le", "gt", "ge", "and_", "or_", "not_", "sym_not", "abs"}
_MATH_OPS = {"ceil", "floor", "sqrt", "trunc"}
#: Names a symbolic shape expression may use besides symbols (s0, u1 …) and numbers.
_SYMPY_NAMES = {
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "TruncToFloat", "TruncToInt",
    "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "IsNonOverlappingAndDenseIndicator", "Max", "Min", "Eq",
    "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "floor", "ceiling", "Abs", "sqrt", "oo", "True", "False",
    "Integer", "Rational", "Float", "Piecewise", "Symbol", "Pow", "Mul", "Add", "OpaqueUnaryFn_sqrt",
}
_EXPR_CHARS = re.compile(r"[\w\s+\-*/%().,<>=!&|~^]*")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_SYMBOL = re.compile(r"[a-z]{1,4}\d+")


def check_export_archive(path: str | os.PathLike) -> None:
    """Refuse a torch.export archive that could run code when loaded; ArchiveError names why."""
    path = Path(path)
    check_archive(path, "export")
    with zipfile.ZipFile(path) as z:
        entries = {_below_top(i.filename): i for i in z.infolist() if not i.is_dir()}
        for name in entries:
            if not _EXPORT_ENTRIES.fullmatch(name):
                raise ArchiveError(f"{path.name}: refused: the entry {name!r} is not part of a torch.export file"
                                   " (compiled code or data that torch would load)")
        for name, info in entries.items():
            if name.startswith("models/"):
                _check_graph(path.name, name, _json(path.name, z.read(info)))
            elif name.endswith("_config.json"):
                _check_payload_config(path.name, name, _json(path.name, z.read(info)))
            elif name.startswith("data/sample_inputs/"):
                _check_tensor_pickle(path.name, "its sample inputs", z.read(info))


def _json(label: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArchiveError(f"{label}: a damaged torch.export file ({e})") from None


def _check_payload_config(label: str, name: str, config: Any) -> None:
    """Weights and constants are raw tensor bytes; a pickled one or a custom object is refused."""
    items = config.get("config", {}) if isinstance(config, dict) else None
    if not isinstance(items, dict):
        raise ArchiveError(f"{label}: a damaged torch.export file ({name} is not a payload list)")
    for key, meta in items.items():
        path_name = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
        if not isinstance(meta, dict) or meta.get("use_pickle") or not path_name.startswith(("weight_", "tensor_")):
            raise ArchiveError(f"{label}: refused: {key!r} is stored as a Python object (a pickle), which would"
                               " run code when loaded; only raw tensors are loaded")


def _check_graph(label: str, name: str, program: Any) -> None:
    """Every node calls one of torch's operators; every symbolic expression is plain arithmetic."""
    if not isinstance(program, dict):
        raise ArchiveError(f"{label}: a damaged torch.export file ({name})")
    if program.get("guards_code"):
        raise ArchiveError(f"{label}: refused: it carries Python guard code, which would run when loaded")
    for value in _walk(program):
        if isinstance(value, dict):
            if "target" in value and "inputs" in value and "outputs" in value:
                _check_target(label, value["target"])
            expr = value.get("expr_str")
            if expr is not None:
                _check_expression(label, expr)
    for expr in (program.get("range_constraints") or {}):
        _check_expression(label, expr)


def _walk(value: Any):
    stack = [value]
    while stack:
        v = stack.pop()
        yield v
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def _check_target(label: str, target: Any) -> None:
    parts = str(target).split(".")
    ok = (
        (len(parts) >= 4 and parts[:2] == ["torch", "ops"] and parts[2] in _OP_NAMESPACES
         and all(_IDENTIFIER.fullmatch(p) and not p.startswith("__") for p in parts[3:]))
        or (len(parts) == 2 and parts[0] == "_operator" and parts[1] in _PYTHON_OPS)
        or (len(parts) == 2 and parts[0] == "math" and parts[1] in _MATH_OPS)
        or str(target) in ("torch.sym_int", "torch.sym_float", "torch.sym_max", "torch.sym_min", "torch.sym_not")
    )
    if not ok:
        raise ArchiveError(f"{label}: refused: a graph node calls {str(target)[:80]!r}, which is not one of"
                           " torch's tensor operators")


def _check_expression(label: str, expr: Any) -> None:
    text = str(expr)
    names = _IDENTIFIER.findall(text)
    bad = (not _EXPR_CHARS.fullmatch(text) or "__" in text or len(text) > 2000
           or re.search(r"\.\s*[A-Za-z_]", text)
           or any(n not in _SYMPY_NAMES and not _SYMBOL.fullmatch(n) for n in names))
    if bad:
        raise ArchiveError(f"{label}: refused: a symbolic shape {text[:60]!r} is not plain arithmetic"
                           " (torch would evaluate it as Python)")


def _check_tensor_pickle(label: str, what: str, data: bytes) -> None:
    """A torch.save payload that torch's weights-only unpickler reads (tensors, containers, numbers)."""
    import torch

    with contextlib.suppress(zipfile.BadZipFile):
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            _archive(f"{label} ({what})", inner.infolist(), len(data))
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure of the safe unpickler refuses the file
        reason = str(e).strip().splitlines()
        detail = next((line for line in reason if "GLOBAL" in line or "Unsupported" in line), reason[0] if reason else "")
        raise ArchiveError(f"{label}: refused: {what} hold Python objects, not only tensors, and would run code"
                           f" when loaded ({detail.strip()[:120]})") from None


#: One export load at a time: the guard below replaces module attributes while it runs.
_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def _only_tensor_pickles():
    """While torch.export loads a checked archive: torch.load reads tensors only, and the two other
    unpicklers it may call refuse (a second line of defence behind `check_export_archive`)."""
    import pickle

    import torch
    from torch.export.pt2_archive import _package

    def refused(*_args, **_kwargs):
        raise pickle.UnpicklingError("refused: this file would be unpickled")

    original_load = torch.load

    def tensors_only(f, *args, **kwargs):
        kwargs["weights_only"] = True
        return original_load(f, *args, **kwargs)

    saved = (torch.load, torch._C._pickle_load_obj, _package.pickle)
    torch.load = tensors_only
    torch._C._pickle_load_obj = refused
    _package.pickle = type("NoPickle", (), {"loads": staticmethod(refused), "load": staticmethod(refused)})
    try:
        yield
    finally:
        torch.load, torch._C._pickle_load_obj, _package.pickle = saved


def load_exported(path: str | os.PathLike):
    """torch.export.load of a checked archive, with unpickling restricted to tensors: an
    ExportedProgram, or ArchiveError with one line."""
    import logging

    import torch

    check_export_archive(path)
    export_log = logging.getLogger("torch.export")
    with _LOAD_LOCK, _only_tensor_pickles():
        level = export_log.level
        export_log.setLevel(logging.ERROR)  # torch logs a traceback before its own fallback
        try:
            program = torch.export.load(str(path))
        finally:
            export_log.setLevel(level)
    program._guards_code = []
    return program
