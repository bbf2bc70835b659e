"""The engine and the command line work where Qt cannot even be imported."""

import subprocess
import sys
import textwrap


def test_engine_runs_without_qt():
    code = textwrap.dedent("""
        import sys
        class NoQt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph", "superqt"):
                    raise ImportError("Qt is not available here")
        sys.meta_path.insert(0, NoQt())
        from explorer.cli import main
        import explorer.core.graph.blockgraph, explorer.core.shapes.trace, explorer.core.model.weights, explorer.core.model.loading
        import explorer.core.shapes.export, explorer.core.text, explorer.diagram.layout
        assert main(["trace", "googlenet", "--size", "64", "--format", "csv"]) == 0
        assert not [m for m in sys.modules if m.startswith(("PySide6", "pyqtgraph", "explorer.qt"))]
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "inception5b" in out.stdout


def _engine_modules() -> list[str]:
    """Every module under explorer/core and explorer/diagram, by name, found on disk (not from a list)."""
    from pathlib import Path

    import explorer

    root = Path(explorer.__file__).parent
    names = []
    for path in sorted([*root.joinpath("core").rglob("*.py"), *root.joinpath("diagram").rglob("*.py")]):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_engine_module_imports_where_qt_cannot():
    modules = _engine_modules()
    assert len(modules) > 40 and "explorer.core.session.state" in modules
    code = textwrap.dedent(f"""
        import importlib, sys
        class NoQt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph", "superqt"):
                    raise ImportError("Qt is not available here")
        sys.meta_path.insert(0, NoQt())
        for name in {modules!r}:
            importlib.import_module(name)
        assert not [m for m in sys.modules if m.startswith(("PySide6", "pyqtgraph", "explorer.qt"))]
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_session_imports_no_torch():
    """The window imports the session before it first paints: torch must not come with it."""
    code = textwrap.dedent("""
        import sys
        import explorer.core.session.state, explorer.core.session.tasks, explorer.core.text, explorer.core.cancel
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))[:5]
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
