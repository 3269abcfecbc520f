#!/usr/bin/env bash
# Install everything btcmesh needs into ./.venv (Python) and ./.tools/bin (btcd, CometBFT).
#   scripts/setup.sh            Python environment only (enough for the embedded demo)
#   scripts/setup.sh --daemons  also build btcd v0.26.0 and CometBFT v0.38.25 with Go, and the
#                               upstream Mesh Security harness with cargo (Rust 1.95)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"

if [ "${1:-}" = "--daemons" ]; then
    mkdir -p .tools/bin
    export GOBIN="$PWD/.tools/bin" GOTOOLCHAIN=local
    [ -x .tools/bin/btcd ] || go install github.com/btcsuite/btcd@v0.26.0
    [ -x .tools/bin/cometbft ] || go install github.com/cometbft/cometbft/cmd/cometbft@v0.38.25
    # Debian packages, installed only when missing (one apt-get update): headless Chromium + chromedriver
    # for the explorer's browser test; the PostgreSQL server for the API index tests on PostgreSQL
    # (tests start their own cluster)
    APT_MISSING=()
    { command -v chromium && command -v chromedriver; } >/dev/null || APT_MISSING+=(chromium chromium-driver)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || APT_MISSING+=(postgresql)
    if [ "${#APT_MISSING[@]}" -gt 0 ]; then
        SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_MISSING[@]}"
    fi
    .tools/bin/btcd --version
    .tools/bin/cometbft version
    # the upstream Mesh Security contracts, run in cw-multi-test (Rust 1.95; the sources are the
    # read-only ../shared/upstream/mesh-security, so the build goes to a target dir in the clone)
    (cd conformance/mesh-upstream && CARGO_TARGET_DIR="$PWD/target" cargo build --locked --quiet)
    conformance/mesh-upstream/target/debug/mesh-upstream-harness </dev/null
fi
