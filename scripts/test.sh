#!/usr/bin/env bash
# Every check and test of the project: formatting, lints, unit and integration tests.
# The integration tests start the real `aar` binary on loopback ports; the full-disk test
# mounts a small tmpfs and so needs root (it says so and skips itself otherwise).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo fmt --all --check
cargo clippy --release --locked --all-targets -- -D warnings
cargo test --release --locked --workspace
