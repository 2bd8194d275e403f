#!/usr/bin/env bash
# Builds ./aar_ubuntu-22.04-<arch>.charm the way `charmcraft pack` lays a charm out, without
# charmcraft (which needs an Ubuntu host or snapd). On Ubuntu with charmcraft, `charmcraft
# pack` builds the same thing from charmcraft.yaml.
#
# The archive holds a native daemon and extension module, so it is for the architecture of
# the machine that builds it: amd64 on x86_64, arm64 on aarch64 (Anbox runs one publisher
# AMS per architecture, and the registry may sit on either). Build on an arm64 machine for
# arm64 units; there is no cross build here. The name follows charmcraft's
# <name>_<base>-<channel>-<arch>.charm (one archive serves 22.04 and 24.04).
#
# The archive holds:
#   dispatch                 the charm plugin's dispatch script (runs src/charm.py)
#   hooks/{install,start,upgrade-charm} -> ../dispatch   (for old Juju, as charmcraft does)
#   src/                     charm/*.py, and the dashboards and alert rules for the
#                            cos-agent relation (grafana_dashboards/, *_alert_rules/)
#   venv/                    ops & co. for the target Ubuntu Python (pip --target), and the
#                            aar_ext PyO3 module (abi3: one build for 3.10 and 3.12)
#   bin/aar                  the daemon, `cargo build --release -p aar`
#   metadata.yaml config.yaml actions.yaml manifest.yaml
#
# One archive serves both bases: its Python dependencies are pure Python except PyYAML's
# optional C loader, which is added for both Ubuntu Pythons (3.10 on 22.04, 3.12 on 24.04).
#
# Usage: scripts/build-charm.sh            (uses .venv/, creating it when missing)
#        scripts/build-charm.sh --name     prints the file name it builds on this machine
# Env:   VENV=path   PYTHON=python3 used to create the venv
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

# Juju's architecture name for this machine, and the manylinux platform tag of its wheels.
case "$(uname -m)" in
    x86_64) arch=amd64 wheel_platform=manylinux2014_x86_64 ;;
    aarch64 | arm64) arch=arm64 wheel_platform=manylinux2014_aarch64 ;;
    *)
        echo "build-charm: cannot build on $(uname -m): the charm is built for amd64 or arm64, on a machine of that architecture" >&2
        exit 1
        ;;
esac
charm=aar_ubuntu-22.04-$arch.charm
if [ "${1:-}" = "--name" ]; then
    echo "$charm"
    exit 0
fi
echo "build-charm: building $charm for $arch (this machine's architecture)"

venv=${VENV:-$root/.venv}
if [ ! -x "$venv/bin/maturin" ]; then
    echo "build-charm: creating $venv with requirements-dev.txt"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
fi
py=$venv/bin/python

build=$root/build/charm
prime=$build/prime
target_dir=$(cargo metadata --format-version 1 --no-deps | "$py" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

echo "build-charm: daemon (cargo build --release -p aar)"
cargo build --release --locked -p aar

echo "build-charm: aar_ext module (maturin, abi3-py310)"
rm -rf "$build/wheels"
"$venv/bin/maturin" build --release --locked --quiet -m pyext/Cargo.toml --out "$build/wheels"

echo "build-charm: laying out $prime"
rm -rf "$prime"
mkdir -p "$prime/src" "$prime/hooks" "$prime/bin" "$prime/venv"

# The charm plugin's dispatch (charmcraft const.DISPATCH_CONTENT).
cat > "$prime/dispatch" <<'EOF'
#!/bin/sh

JUJU_DISPATCH_PATH="${JUJU_DISPATCH_PATH:-$0}" PYTHONPATH=lib:venv \
  exec ./src/charm.py
EOF
chmod 755 "$prime/dispatch"
for hook in install start upgrade-charm; do
    ln -s ../dispatch "$prime/hooks/$hook"
done

cp charm/*.py "$prime/src/"
# What the charm hands the observability collector (charm/cos.py reads them beside itself).
cp -r charm/grafana_dashboards charm/prometheus_alert_rules charm/loki_alert_rules "$prime/src/"
chmod 755 "$prime/src/charm.py"
cp metadata.yaml config.yaml actions.yaml "$prime/"

# Python dependencies for Ubuntu 22.04's Python 3.10, as wheels only (no compiler on the
# target), then the compiled parts of the same pins for 24.04's 3.12 beside them: CPython
# picks the extension whose ABI tag matches and ignores the other.
pip_target() {
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-compile \
        --target "$1" --python-version "$2" --implementation cp \
        --platform "$wheel_platform" --only-binary=:all: -r requirements.txt
}
pip_target "$prime/venv" 3.10
rm -rf "$build/venv312"
pip_target "$build/venv312" 3.12
(cd "$build/venv312" && find . -name '*.cpython-312-*.so') | while read -r so; do
    cp "$build/venv312/$so" "$prime/venv/$so"
done
rm -rf "$prime/venv/bin"  # console scripts of the build machine's Python: unused

# A wheel is a zip of site-packages content; pip would refuse its manylinux_2_34 tag
# against --platform above, and unpacking is all it would do.
"$py" -m zipfile -e "$build"/wheels/aar_ext-*.whl "$prime/venv/"

cp "$target_dir/release/aar" "$prime/bin/aar"
# The daemon keeps line tables for its own backtraces; the shipped copy does not need them.
if command -v strip >/dev/null; then strip --strip-debug "$prime/bin/aar"; fi
chmod 755 "$prime/bin/aar"

cat > "$prime/manifest.yaml" <<EOF
# Written by scripts/build-charm.sh in charmcraft's manifest format.
analysis:
  attributes:
  - name: language
    result: python
  - name: framework
    result: operator
charmcraft-started-at: '$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)'
bases:
- name: ubuntu
  channel: '22.04'
  architectures:
  - $arch
- name: ubuntu
  channel: '24.04'
  architectures:
  - $arch
EOF

# charmcraft's build_zip: deflated, symlinks followed (hooks hold copies of dispatch).
rm -f "$charm"
"$py" - "$prime" "$charm" <<'EOF'
import os, pathlib, sys, zipfile
prime, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
    for directory, _, files in sorted(os.walk(prime, followlinks=True)):
        for name in sorted(files):
            path = pathlib.Path(directory, name)
            archive.write(path, path.relative_to(prime))
EOF
echo "build-charm: built $root/$charm for $arch, Ubuntu 22.04 and 24.04 ($(du -h "$charm" | cut -f1))"
