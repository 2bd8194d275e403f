#!/usr/bin/env bash
# Every check and test of the project: formatting, lints, the daemon's unit and
# integration tests, then the charm's (scripts/test-charm.sh: the .charm build,
# charmcraft analyse, ruff, ops.testing unit tests, the end-to-end dispatch test).
# Installs what a fresh Debian machine lacks (as root). The integration tests start the
# real `aar` binary on loopback ports; the full-disk test mounts a small tmpfs and so
# needs root (it says so and skips itself otherwise).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Debian packages the tests call: mount/umount for the full-disk test, the openssl
# command line as the independent verifier of CloudFront signatures and to make RSA keys.
missing=()
for pkg in mount openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "scripts/test.sh: cargo is missing; install Rust (rustup) first" >&2; exit 1; }

cargo fmt --all --check
cargo clippy --release --locked --all-targets -- -D warnings
cargo test --release --locked --workspace
scripts/test-charm.sh
