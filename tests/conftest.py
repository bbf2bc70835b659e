"""Test-wide setup: the shared helpers in tests/ (netutil) are importable from every test package, and Ctrl-C
works as at a terminal."""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# A test run started in the background by a shell without job control (`cmd &` in a script) inherits SIGINT
# ignored: Python then never raises KeyboardInterrupt, and the commands the tests start ignore it too. The Ctrl-C
# tests need what a person at a terminal has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
