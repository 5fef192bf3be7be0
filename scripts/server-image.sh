#!/usr/bin/env bash
# Build the control server's image (deploy/Dockerfile.server) without any registry, FROM the local
# Debian base the agent image uses (octotui-debian-base:bookworm, made by scripts/agent-image.sh
# when missing: that needs root and a Debian mirror once).
#
#   bash scripts/server-image.sh [TAG]          (default TAG: octotui-server:latest)
#
# Idempotent: the image carries a label with a hash of what it ships (octotui/, agent/, pyproject.toml,
# the lock, the Dockerfile and this script); when TAG has the same hash nothing is done. This
# machine's pip fetches the wheels (Python 3.11, manylinux) into the build context, so the build
# itself needs no network. Needs a Docker engine. Reads no standard input.
set -euo pipefail

TAG="${1:-octotui-server:latest}"
BASE_TAG="${OCTOTUI_AGENT_BASE:-octotui-debian-base:bookworm}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LOCK_FILE="/var/lock/octotui-server-image.lock"
LABEL="io.octotui.source-hash"
START="$(date +%s)"
PIP_PYTHON="${OCTOTUI_PIP_PYTHON:-}"
if [ -z "$PIP_PYTHON" ]; then
    for candidate in "$ROOT/.venv/bin/python" python3; do
        if "$candidate" -c 'import sys, tomllib, pip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
            PIP_PYTHON="$candidate"
            break
        fi
    done
fi

say() { echo "server-image: $*"; }
die() {
    echo "server-image: error: $*" >&2
    exit 1
}

source_hash() {
    (cd "$ROOT" && git ls-files -co --exclude-standard -- octotui agent 2>/dev/null | grep '\.py$' | sort \
        | while read -r f; do printf '%s\n' "$f"; sha256sum <"$f"; done
        for f in pyproject.toml requirements.lock README.md deploy/Dockerfile.server scripts/server-image.sh; do
            printf '%s\n' "$f"
            sha256sum <"$f"
        done) | sha256sum | cut -c1-32
}
image_hash() { docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (run scripts/docker-engine.sh first)"
[ -n "$PIP_PYTHON" ] || die "no Python >= 3.11 with pip here (make install, or set OCTOTUI_PIP_PYTHON)"
HASH="$(source_hash)"
if [ "$(image_hash "$TAG")" = "$HASH" ]; then
    say "image $TAG is up to date (sources $HASH), nothing to do"
    exit 0
fi
exec 9>"$LOCK_FILE"
flock 9
if [ "$(image_hash "$TAG")" = "$HASH" ]; then
    say "image $TAG was built meanwhile, nothing to do"
    exit 0
fi

if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    say "step 1/3: no base image $BASE_TAG: making it with scripts/agent-image.sh"
    bash "$HERE/agent-image.sh" </dev/null
fi
say "step 1/3: base image $BASE_TAG present"

WORK="$(mktemp -d /var/tmp/octotui-server-image.XXXXXX)"
trap 'rm -rf --one-file-system "$WORK"' EXIT
CONTEXT="$WORK/context"
SRC="$WORK/src"
mkdir -p "$CONTEXT/wheels" "$SRC"
say "step 2/3: build context: every dependency's wheel, fetched by this machine's pip (sources $HASH)"
cp -r "$ROOT/octotui" "$ROOT/agent" "$SRC/"
find "$SRC" -name '__pycache__' -prune -exec rm -rf {} +
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$SRC/"
"$PIP_PYTHON" - "$ROOT/pyproject.toml" >"$CONTEXT/requirements.txt" <<'PY'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
PY
sed -e 's/ \\$//' -e '/^[[:space:]]*--hash=/d' -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' \
    "$ROOT/requirements.lock" >"$CONTEXT/constraints.txt"
ARCH="$(uname -m)"
if ! "$PIP_PYTHON" -m pip download --quiet --dest "$CONTEXT/wheels" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --platform "manylinux_2_36_$ARCH" --platform "manylinux_2_34_$ARCH" --platform "manylinux_2_28_$ARCH" \
    --platform "manylinux_2_17_$ARCH" --platform "manylinux2014_$ARCH" --platform "manylinux1_$ARCH" --platform any \
    -r "$CONTEXT/requirements.txt" -c "$CONTEXT/constraints.txt" </dev/null >"$WORK/pip.log" 2>&1; then
    tail -n 30 "$WORK/pip.log" >&2
    die "pip download of the server's dependencies failed (log above)"
fi
if ! "$PIP_PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$CONTEXT/wheels" "$SRC" </dev/null >"$WORK/pip.log" 2>&1; then
    tail -n 30 "$WORK/pip.log" >&2
    die "building the octotui wheel failed (log above)"
fi
say "step 2/3: $(find "$CONTEXT/wheels" -name '*.whl' | wc -l) wheels"

say "step 3/3: docker build $TAG FROM $BASE_TAG"
OLD_ID="$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
if ! docker build --force-rm --build-arg "BASE=$BASE_TAG" --label "$LABEL=$HASH" \
    -f "$ROOT/deploy/Dockerfile.server" -t "$TAG" "$CONTEXT" </dev/null >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    die "docker build failed (log above)"
fi
VERSION="$(docker run --rm --entrypoint octotui "$TAG" --version </dev/null)" \
    || die "the built image cannot run octotui --version"
NEW_ID="$(docker image inspect --format '{{.Id}}' "$TAG")"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
    docker rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
SIZE="$(docker image inspect --format '{{.Size}}' "$TAG")"
say "built $TAG ($VERSION) in $(($(date +%s) - START)) s, $((SIZE / 1000000)) MB"
