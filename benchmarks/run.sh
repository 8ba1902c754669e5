#!/usr/bin/env bash
# One command for the whole benchmark: set up what it needs, run every scenario side by side, write the report.
#   benchmarks/run.sh            # the default set (~18 min on 2 cores): results/latest.{md,png,json}
#   benchmarks/run.sh --quick    # a short harness check; any other flag goes to run.py (see --help)
# The gateway runs from the project's .venv (made here with `make` if missing); the benchmark's own tools (FastMCP,
# the load generator, matplotlib, ...) live in benchmarks/.venv so they never touch the project's pins.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python3}"

if [ ! -x "$repo/.venv/bin/mcp-gateway" ]; then
    make -C "$repo" .venv/bin/.installed
fi
venv="$here/.venv"
if [ ! -f "$venv/.installed" ] || [ "$here/requirements.txt" -nt "$venv/.installed" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
    touch "$venv/.installed"
fi
command -v redis-server >/dev/null || echo "note: redis-server not on PATH; pass --redis-url or drop the redis scenarios" >&2
exec "$venv/bin/python" "$here/run.py" "$@"
