#!/usr/bin/env bash
# Build the agent image (agent/Dockerfile) without any registry: the base is a debootstrapped Debian
# bookworm with python3, imported with `docker import` as octotui-debian-base:bookworm.
#
#   bash scripts/agent-image.sh [TAG]          (default TAG: octotui-agent:latest)
#
# Idempotent: the image carries a label with a hash of what it ships (agent/, octotui/__init__.py,
# octotui/protocol/, pyproject.toml, the entry point and this build); when the existing TAG has the
# same hash nothing is done. This machine's pip fetches the wheels (Python 3.11, manylinux) into the
# build context, so the build itself needs no network and bakes in no local trust store.
# Needs a Docker engine; root and a Debian mirror only when the base image is missing (the first
# mirror this machine's apt uses, or OCTOTUI_DEBIAN_MIRROR). Reads no standard input.
set -euo pipefail

TAG="${1:-octotui-agent:latest}"
BASE_TAG="${OCTOTUI_AGENT_BASE:-octotui-debian-base:bookworm}"
SUITE="bookworm"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LOCK_FILE="/var/lock/octotui-agent-image.lock"
LABEL="io.octotui.source-hash"
START="$(date +%s)"
# A Python >= 3.11 with pip, to fetch wheels: the project's virtualenv when there is one.
PIP_PYTHON="${OCTOTUI_PIP_PYTHON:-}"
if [ -z "$PIP_PYTHON" ]; then
    for candidate in "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/python" python3; do
        if "$candidate" -c 'import sys, tomllib, pip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
            PIP_PYTHON="$candidate"
            break
        fi
    done
fi

say() { echo "agent-image: $*"; }
die() {
    echo "agent-image: error: $*" >&2
    exit 1
}
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# What the image ships, and how it is built: any change to these files means a rebuild.
SHIPPED=(agent/*.py agent/monitors/*.py agent/Dockerfile octotui/__init__.py octotui/protocol/*.py pyproject.toml requirements.lock README.md
    scripts/agent-entrypoint.sh scripts/agent-image.sh)
source_hash() {
    (cd "$ROOT" && for f in "${SHIPPED[@]}"; do
        printf '%s\n' "$f"
        sha256sum <"$f"
    done) | sha256sum | cut -c1-32
}
image_hash() { docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }
# shellcheck source=apt-mirror.sh
. "$HERE/apt-mirror.sh"

docker info >/dev/null 2>&1 || die "no Docker engine answers (run scripts/docker-engine.sh first)"
[ -n "$PIP_PYTHON" ] || die "no Python >= 3.11 with pip here (make install, or set OCTOTUI_PIP_PYTHON)"
HASH="$(source_hash)"
if [ "$(image_hash "$TAG")" = "$HASH" ]; then
    say "image $TAG is up to date (sources $HASH), nothing to do"
    exit 0
fi

# One build at a time; a build that finished while we waited is reused.
exec 9>"$LOCK_FILE"
flock 9
if [ "$(image_hash "$TAG")" = "$HASH" ]; then
    say "image $TAG was built meanwhile, nothing to do"
    exit 0
fi

WORK="$(mktemp -d /var/tmp/octotui-agent-image.XXXXXX)"
cleanup() {
    local code=$? mnt
    set +e
    # A failed debootstrap can leave proc/sys mounted in the rootfs: unmount before deleting anything.
    for mnt in $(awk '{print $2}' /proc/mounts | grep -F "$WORK/" | sort -r); do
        umount -l "$mnt"
    done
    rm -rf --one-file-system "$WORK"
    exit "$code"
}
trap cleanup EXIT

if image_exists "$BASE_TAG"; then
    say "step 1/3: base image $BASE_TAG present"
else
    [ "$(id -u)" = "0" ] || die "making the base image $BASE_TAG needs root (debootstrap); run: sudo bash $0 $TAG"
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap on this host"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq </dev/null || die "apt-get update failed"
        apt-get install -y -qq --no-install-recommends debootstrap </dev/null >/dev/null \
            || die "apt-get install debootstrap failed"
    fi
    # The mirror this machine's apt already uses (scripts/apt-mirror.sh), or the one named.
    MIRROR="${OCTOTUI_DEBIAN_MIRROR:-}"
    [ -n "$MIRROR" ] || MIRROR="$(debian_mirror "$SUITE")" || die "no Debian mirror to debootstrap $SUITE from (above)"
    ROOTFS="$WORK/rootfs"
    say "step 1/3: making base image $BASE_TAG: debootstrap minbase $SUITE with python3 (mirror $MIRROR, about a minute)"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$ROOTFS" "$MIRROR" </dev/null >"$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" >&2
        die "debootstrap failed (log above)"
    fi
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
    tar -C "$ROOTFS" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' \
        -m "Debian $SUITE minbase with python3 for octotui" - "$BASE_TAG" >/dev/null
    say "step 1/3: base image done in $(($(date +%s) - START)) s"
fi

say "step 2/3: build context: the agent's wheels, fetched by this machine's pip (sources $HASH)"
CONTEXT="$WORK/context"
SRC="$WORK/src"
mkdir -p "$CONTEXT/wheels" "$SRC/octotui"
cp -r "$ROOT/agent" "$SRC/agent"
find "$SRC/agent" -name '__pycache__' -prune -exec rm -rf {} +
rm -f "$SRC/agent/Dockerfile"
cp "$ROOT/octotui/__init__.py" "$SRC/octotui/"
cp -r "$ROOT/octotui/protocol" "$SRC/octotui/protocol"
find "$SRC/octotui" -name '__pycache__' -prune -exec rm -rf {} +
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$SRC/"
cp "$ROOT/scripts/agent-entrypoint.sh" "$CONTEXT/"
# Only the agent's dependencies, with the bounds of pyproject.toml and the versions of requirements.lock.
"$PIP_PYTHON" - "$ROOT/pyproject.toml" >"$CONTEXT/requirements.txt" <<'PY'
import re, sys, tomllib
wanted = {"httpx", "psutil", "pydantic"}  # the agent speaks to Docker over httpx (agent/engine.py)
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if re.split(r"[<>=!~\[ ]", d)[0] in wanted))
PY
# The lock's versions as plain pins: a constraints file with hashes puts some pips (23.x) in
# --require-hashes mode, which then refuses the unpinned ranges of requirements.txt.
sed -e 's/ \\$//' -e '/^[[:space:]]*--hash=/d' -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' \
    "$ROOT/requirements.lock" >"$CONTEXT/constraints.txt"
# Wheels are fetched here, for the image's Python (3.11, glibc 2.36), so that the build needs no
# network and no trust store of this machine (a proxy's CA, a local index) goes into the image.
ARCH="$(uname -m)"
if ! "$PIP_PYTHON" -m pip download --quiet --dest "$CONTEXT/wheels" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --platform "manylinux_2_36_$ARCH" --platform "manylinux_2_28_$ARCH" --platform "manylinux_2_17_$ARCH" \
    --platform "manylinux2014_$ARCH" --platform "manylinux1_$ARCH" --platform any \
    -r "$CONTEXT/requirements.txt" -c "$CONTEXT/constraints.txt" </dev/null >"$WORK/pip.log" 2>&1; then
    tail -n 30 "$WORK/pip.log" >&2
    die "pip download of the agent's dependencies failed (log above)"
fi
if ! "$PIP_PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$CONTEXT/wheels" "$SRC" </dev/null >"$WORK/pip.log" 2>&1; then
    tail -n 30 "$WORK/pip.log" >&2
    die "building the octotui wheel failed (log above)"
fi
say "step 2/3: $(find "$CONTEXT/wheels" -name '*.whl' | wc -l) wheels"

say "step 3/3: docker build $TAG FROM $BASE_TAG"
OLD_ID="$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
if ! docker build --force-rm --build-arg "BASE=$BASE_TAG" --label "$LABEL=$HASH" \
    -f "$ROOT/agent/Dockerfile" -t "$TAG" "$CONTEXT" </dev/null >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    die "docker build failed (log above)"
fi
VERSION="$(docker run --rm --entrypoint octotui-agent "$TAG" --version </dev/null)" \
    || die "the built image cannot run octotui-agent --version"

NEW_ID="$(docker image inspect --format '{{.Id}}' "$TAG")"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
    # The previous build of TAG, now untagged; kept if a container still uses it.
    docker rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
SIZE="$(docker image inspect --format '{{.Size}}' "$TAG")"
say "built $TAG ($VERSION) in $(($(date +%s) - START)) s, $((SIZE / 1000000)) MB"
