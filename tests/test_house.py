"""The house rules that can be measured: no class in explorer/ over 400 lines, no function over 80, one place
that constructs the job runner and the thread pool."""

import ast
from pathlib import Path

import explorer

ROOT = Path(explorer.__file__).parent


def _definitions():
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(ROOT.parent), node, node.end_lineno - node.lineno + 1


def test_no_class_over_400_lines_and_no_function_over_80():
    too_long = [f"{path}:{node.lineno} {node.name} ({n} lines)" for path, node, n in _definitions()
                if n > (400 if isinstance(node, ast.ClassDef) else 80)]
    assert too_long == []


def test_one_place_constructs_the_runner_and_the_pool():
    calls = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                    "JobRunner", "QThreadPool"):
                calls.append((str(path.relative_to(ROOT.parent)), node.func.__dict__.get("id") or node.func.attr))
    assert sorted(calls) == [("explorer/qt/window/main_window.py", "JobRunner"),
                             ("explorer/qt/workers.py", "QThreadPool")]
