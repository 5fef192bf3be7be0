#!/usr/bin/env bash
# Build the control server's image (deploy/Dockerfile.server) without any registry, FROM the local
# Debian base the agent image uses (octotui-debian-base:bookworm, made by scripts/agent-image.sh
# when missing: that needs root and a Debian mirror once).
#
#   bash scripts/server-image.sh [TAG]          (default TAG: octotui-server:latest)
#
# Idempotent: the image carries a label with a hash of what it ships (octotui/, agent/, pyproject.toml,
# the lock, the Dockerfile, this script and scripts/imagelib.sh, whose steps it shares with the agent
# image's); when TAG has the same hash nothing is done. This machine's pip fetches the wheels (Python
# 3.11, manylinux) into the build context, so the build itself needs no network. Needs a Docker
# engine. Reads no standard input.
set -euo pipefail

TAG="${1:-octotui-server:latest}"
BASE_TAG="${OCTOTUI_AGENT_BASE:-octotui-debian-base:bookworm}"
NAME="server-image"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
START="$(date +%s)"
# shellcheck source=imagelib.sh
. "$HERE/imagelib.sh"

# What the image ships, and how it is built: any change to these files means a rebuild.
mapfile -t SHIPPED < <(cd "$ROOT" && git ls-files -co --exclude-standard -- octotui agent 2>/dev/null | grep '\.py$' | sort)
SHIPPED+=(pyproject.toml requirements.lock README.md deploy/Dockerfile.server scripts/server-image.sh scripts/imagelib.sh)
pip_python
HASH="$(hash_files "${SHIPPED[@]}")"
exit_if_current "$TAG" "$HASH" /var/lock/octotui-server-image.lock

if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    say "step 1/3: no base image $BASE_TAG: making it with scripts/agent-image.sh"
    bash "$HERE/agent-image.sh" </dev/null
fi
say "step 1/3: base image $BASE_TAG present"

WORK="$(mktemp -d /var/tmp/octotui-server-image.XXXXXX)"
trap 'rm -rf --one-file-system "$WORK"' EXIT
CONTEXT="$WORK/context"
SRC="$WORK/src"
mkdir -p "$CONTEXT" "$SRC"
say "step 2/3: build context: every dependency's wheel, fetched by this machine's pip (sources $HASH)"
cp -r "$ROOT/octotui" "$ROOT/agent" "$SRC/"
find "$SRC" -name '__pycache__' -prune -exec rm -rf {} +
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$SRC/"
"$PIP_PYTHON" - "$ROOT/pyproject.toml" >"$CONTEXT/requirements.txt" <<'PY'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
PY
fetch_wheels "$CONTEXT" "$SRC" "$WORK"
build_image "$TAG" "$ROOT/deploy/Dockerfile.server" "$CONTEXT" "$BASE_TAG" "$HASH" octotui "$WORK"
