"""Test-wide setup: the shared helpers in tests/ (netutil) are importable from every test package."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
