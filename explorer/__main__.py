"""`python -m explorer` is the same as the `inception-explorer` command."""

import sys

from explorer.launcher import main

sys.exit(main())
