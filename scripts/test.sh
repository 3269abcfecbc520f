#!/usr/bin/env bash
# Install everything (Python packages, btcd, CometBFT) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --daemons
export BTCMESH_TOOLS="$PWD/.tools/bin" BTCMESH_REQUIRE_DAEMONS=1
exec .venv/bin/python -m pytest -q "$@"
