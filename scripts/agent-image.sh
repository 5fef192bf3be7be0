#!/usr/bin/env bash
# Build the agent image (agent/Dockerfile) without any registry: the base is a debootstrapped Debian
# bookworm with python3, imported with `docker import` as octotui-debian-base:bookworm.
#
#   bash scripts/agent-image.sh [TAG]          (default TAG: octotui-agent:latest)
#
# Idempotent: the image carries a label with a hash of what it ships (agent/, octotui/__init__.py,
# octotui/protocol/, pyproject.toml, the entry point and this build); when the existing TAG has the
# same hash nothing is done. This machine's pip fetches the wheels (Python 3.11, manylinux) into the
# build context, so the build itself needs no network and bakes in no local trust store. The steps
# it shares with scripts/server-image.sh are scripts/imagelib.sh's.
# Needs a Docker engine; root and a Debian mirror only when the base image is missing (the first
# mirror this machine's apt uses, or OCTOTUI_DEBIAN_MIRROR). Reads no standard input.
set -euo pipefail

TAG="${1:-octotui-agent:latest}"
BASE_TAG="${OCTOTUI_AGENT_BASE:-octotui-debian-base:bookworm}"
SUITE="bookworm"
NAME="agent-image"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
START="$(date +%s)"
# shellcheck source=imagelib.sh
. "$HERE/imagelib.sh"
# shellcheck source=apt-mirror.sh
. "$HERE/apt-mirror.sh"

# What the image ships, and how it is built: any change to these files means a rebuild.
SHIPPED=(agent/*.py agent/monitors/*.py agent/Dockerfile octotui/__init__.py octotui/protocol/*.py pyproject.toml requirements.lock README.md
    scripts/agent-entrypoint.sh scripts/agent-image.sh scripts/imagelib.sh)
pip_python
HASH="$(hash_files "${SHIPPED[@]}")"
exit_if_current "$TAG" "$HASH" /var/lock/octotui-agent-image.lock

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

if docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
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
mkdir -p "$CONTEXT" "$SRC/octotui"
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
fetch_wheels "$CONTEXT" "$SRC" "$WORK"
build_image "$TAG" "$ROOT/agent/Dockerfile" "$CONTEXT" "$BASE_TAG" "$HASH" octotui-agent "$WORK"
