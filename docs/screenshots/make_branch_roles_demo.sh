#!/bin/sh
# The README's heat map of what each branch of the demo model is for (ablate --by-class), regenerated exactly as
# the README says: 60 drawn shapes (draw-shapes, its default seed 1), every branch knocked out on its own.
#
#     sh docs/screenshots/make_branch_roles_demo.sh [PYTHON]
#
# PYTHON defaults to the repository's .venv/bin/python; the table the README quotes goes to stderr, the PNG to
# docs/screenshots/branch_roles_demo.png.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${1:-$REPO/.venv/bin/python}
if [ -x "$PY" ]; then PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY"); fi  # ablate runs in a temporary folder
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m explorer draw-shapes "$TMP/shapes" --count 60 > /dev/null
(cd "$TMP" && "$PY" -m explorer ablate "$TMP/shapes/images" --model shapes_inception --by-class roles.png > /dev/null)
cp "$TMP/roles.png" "$HERE/branch_roles_demo.png"
ls -l "$HERE/branch_roles_demo.png"
