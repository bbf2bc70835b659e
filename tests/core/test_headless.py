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
