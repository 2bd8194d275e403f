#!/usr/bin/env bash
# Every check and test of the project: formatting, lints, the daemon's unit and
# integration tests, the AMS conformance test (Go, tests/ams-contract: the built daemon's
# answers decoded into AMS SDK types), then the charm's (scripts/test-charm.sh: the .charm
# build, charmcraft analyse, ruff, ops.testing unit tests, the end-to-end dispatch test).
# Installs what a fresh Debian machine lacks (as root). The integration tests start the
# real `aar` binary on loopback ports; the full-disk test mounts a small tmpfs and so
# needs root (it says so and skips itself otherwise).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Debian packages the tests call: mount/umount for the full-disk test, the openssl
# command line as the independent verifier of CloudFront signatures and to make RSA keys,
# and Go for the AMS conformance test (AMS is Go; only Go's encoding/json reads our JSON
# exactly as AMS does). Go counts as present when any `go` is on PATH.
missing=()
for pkg in mount openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
command -v go >/dev/null || missing+=(golang-go)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "scripts/test.sh: cargo is missing; install Rust (rustup) first" >&2; exit 1; }
command -v go >/dev/null || { echo "scripts/test.sh: go is missing; install it (apt-get install golang-go) or run as root" >&2; exit 1; }

cargo fmt --all --check

# `cargo test` resolves the daemon's dependencies with the dev-dependencies' features added;
# `cargo build -p aar` (the README's `cargo run`, scripts/build-charm.sh) without them. Any
# crate whose features differ is compiled twice, with everything that depends on it, and
# the tests run other code than the one shipped; daemon/Cargo.toml names those features in
# [dependencies] so that the two agree. Lines: "crate version features".
shipped=$(cargo tree --locked -p aar -e normal,build -f '{p} {f}' --prefix none | sed 's/ (\*)$//' | sort -u)
tested=$(cargo tree --locked --workspace -e normal,build,dev -f '{p} {f}' --prefix none | sed 's/ (\*)$//' | sort -u)
drift=$(comm -23 <(echo "$shipped") <(echo "$tested"))
if [ -n "$drift" ]; then
    echo "scripts/test.sh: the test build turns on features that \`cargo build -p aar\` does not, in:" >&2
    echo "$drift" >&2
    echo "add them to daemon/Cargo.toml [dependencies] (see its last block); \`cargo tree -e features -i <crate>\` says which dev-dependency wants them" >&2
    exit 1
fi
cargo clippy --release --locked --all-targets -- -D warnings
cargo test --release --locked --workspace

# The AMS conformance test runs the binary cargo test has just built, so a missing one is
# an error here rather than the test's skip. GOTOOLCHAIN=local keeps a newer go from
# downloading a toolchain: the module needs nothing but the standard library.
aar_bin="$PWD/target/release/aar"
# Go's caches inside target/ (ignored by git, cleaned with it), so that the test needs no
# HOME and leaves nothing behind it.
export GOCACHE="${GOCACHE:-$PWD/target/go/cache}" GOPATH="${GOPATH:-$PWD/target/go/path}"
[ -x "$aar_bin" ] || { echo "scripts/test.sh: $aar_bin was not built by cargo test" >&2; exit 1; }
unformatted=$(gofmt -l tests/ams-contract)
[ -z "$unformatted" ] || { echo "scripts/test.sh: gofmt would reformat: $unformatted" >&2; exit 1; }
(cd tests/ams-contract && AAR_BIN="$aar_bin" GOTOOLCHAIN=local go vet ./... \
    && AAR_BIN="$aar_bin" GOTOOLCHAIN=local go test -count=1 -v ./...)
scripts/test-charm.sh
