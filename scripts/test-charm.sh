#!/usr/bin/env bash
# Every check of the charm, in the order a failure is cheapest to read:
#   1. tools: .venv/ with requirements-dev.txt, .venv/tools-charmcraft/ with charmcraft
#   2. the .charm: scripts/build-charm.sh (daemon, aar_ext module, layout, zip)
#   3. charmcraft.yaml against charmcraft's own model; `charmcraft analyse` on the .charm
#   4. ruff (lint and format) on charm/ and tests/
#   5. pytest: unit tests (ops.testing, the real aar_ext module) and the end-to-end test
#      of the built .charm (its real dispatch, hook-tool stand-ins, a real daemon)
# The Rust side of the extension (fmt, clippy) is checked with the workspace by
# scripts/test.sh.
#
# Needs: Rust (cargo), Python >= 3.10 with venv and pip, network access to PyPI and
# crates.io. On Debian, a missing venv module is installed with apt (python3-venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$(date +%s)
step() { printf '\n== test-charm: %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

PYTHON=${PYTHON:-python3}
venv=.venv
tools=$venv/tools-charmcraft

step "tools"
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    else
        echo "test-charm: $PYTHON cannot create virtual environments; install python3-venv" >&2
        exit 1
    fi
fi
command -v cargo >/dev/null || { echo "test-charm: cargo is missing; install Rust (rustup)" >&2; exit 1; }
[ -x "$venv/bin/pip" ] || "$PYTHON" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
[ -x "$tools/bin/pip" ] || "$PYTHON" -m venv "$tools"
"$tools/bin/pip" install --quiet --disable-pip-version-check -r requirements-charmcraft.txt

step "build the .charm"
VENV=$PWD/$venv scripts/build-charm.sh
# The unit tests import the very module that went into the .charm.
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps \
    build/charm/wheels/aar_ext-*.whl

step "charmcraft.yaml and charmcraft analyse"
# charmcraft wants a writable runtime directory; CI has no login session to provide one.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
"$tools/bin/python" scripts/check-charmcraft-yaml.py .
# naming-conventions is the only linter ignored: `ua_token` and `storage_config` are the
# product's documented option names (existing deployments set them), so they keep their
# snake case. charmcraft.yaml's analysis.ignore says the same for `charmcraft pack`.
"$tools/bin/charmcraft" analyse --ignore naming-conventions "$(scripts/build-charm.sh --name)"

step "ruff"
"$venv/bin/ruff" check charm tests scripts
"$venv/bin/ruff" format --check charm tests scripts

step "pytest (unit and end-to-end)"
"$venv/bin/python" -m pytest tests

step "done in $(( $(date +%s) - started ))s"
