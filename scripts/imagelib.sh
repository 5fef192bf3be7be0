# shellcheck shell=bash
# What building an octotui image FROM the local Debian base takes, sourced by scripts/agent-image.sh
# and scripts/server-image.sh (one copy, so their wheel platforms and steps cannot drift apart).
# The sourcing script sets NAME (its messages' prefix) and ROOT (the repository) first; it keeps
# its own list of what the image ships (the hash) and its own build context.

LABEL="io.octotui.source-hash"
# The image's Python: 3.11 on Debian bookworm (glibc 2.36). Wheels of every manylinux tag it runs,
# newest first (pip takes the first that a project publishes).
PY_VERSION="3.11"
MANYLINUX=(manylinux_2_36 manylinux_2_34 manylinux_2_28 manylinux_2_17 manylinux2014 manylinux1)

say() { echo "$NAME: $*"; }
die() {
    echo "$NAME: error: $*" >&2
    exit 1
}

# A Python >= 3.11 with pip, to fetch wheels (OCTOTUI_PIP_PYTHON, else the project's virtualenv,
# else python3); dies when there is none.
pip_python() {
    local candidate
    PIP_PYTHON="${OCTOTUI_PIP_PYTHON:-}"
    [ -z "$PIP_PYTHON" ] || return 0
    for candidate in "$ROOT/.venv/bin/python" python3; do
        if "$candidate" -c 'import sys, tomllib, pip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
            PIP_PYTHON="$candidate"
            return 0
        fi
    done
    die "no Python >= 3.11 with pip here (make install, or set OCTOTUI_PIP_PYTHON)"
}

# The hash of these files (paths from ROOT, names and contents): the image's label.
hash_files() {
    (cd "$ROOT" && for f in "$@"; do
        printf '%s\n' "$f"
        sha256sum <"$f"
    done) | sha256sum | cut -c1-32
}

image_hash() { docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }

# Exit at once when image TAG carries HASH; otherwise wait for the lock LOCK_FILE (one build at a
# time) and exit when a build that finished meanwhile made it.
exit_if_current() {
    local tag="$1" hash="$2" lock_file="$3"
    docker info >/dev/null 2>&1 || die "no Docker engine answers (run scripts/docker-engine.sh first)"
    if [ "$(image_hash "$tag")" = "$hash" ]; then
        say "image $tag is up to date (sources $hash), nothing to do"
        exit 0
    fi
    exec 9>"$lock_file"
    flock 9
    if [ "$(image_hash "$tag")" = "$hash" ]; then
        say "image $tag was built meanwhile, nothing to do"
        exit 0
    fi
}

# Into CONTEXT/wheels: the wheels of CONTEXT/requirements.txt at the versions of requirements.lock,
# for the image's Python and glibc, fetched by this machine's pip (the build then needs no network,
# and no trust store of this machine, a proxy's CA or a local index, goes into the image); then the
# wheel of the octotui sources copied to SRC. WORK holds pip's log.
fetch_wheels() {
    local context="$1" src="$2" work="$3" arch platforms=() tag
    mkdir -p "$context/wheels"
    # The lock's versions as plain pins: a constraints file with hashes puts some pips (23.x) in
    # --require-hashes mode, which then refuses the unpinned ranges of requirements.txt.
    sed -e 's/ \\$//' -e '/^[[:space:]]*--hash=/d' -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' \
        "$ROOT/requirements.lock" >"$context/constraints.txt"
    arch="$(uname -m)"
    for tag in "${MANYLINUX[@]}"; do platforms+=(--platform "${tag}_$arch"); done
    if ! "$PIP_PYTHON" -m pip download --quiet --dest "$context/wheels" --only-binary=:all: \
        --python-version "$PY_VERSION" --implementation cp --abi "cp${PY_VERSION/./}" --abi abi3 --abi none \
        "${platforms[@]}" --platform any \
        -r "$context/requirements.txt" -c "$context/constraints.txt" </dev/null >"$work/pip.log" 2>&1; then
        tail -n 30 "$work/pip.log" >&2
        die "pip download of the dependencies failed (log above)"
    fi
    if ! "$PIP_PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$context/wheels" "$src" \
        </dev/null >"$work/pip.log" 2>&1; then
        tail -n 30 "$work/pip.log" >&2
        die "building the octotui wheel failed (log above)"
    fi
    say "step 2/3: $(find "$context/wheels" -name '*.whl' | wc -l) wheels"
}

# docker build TAG from DOCKERFILE and CONTEXT FROM BASE, labelled with HASH; checked by running
# `COMMAND --version` in it; the previous build of TAG removed (unless a container still uses it);
# its size said. WORK holds the build's log; START is when the script began.
build_image() {
    local tag="$1" dockerfile="$2" context="$3" base="$4" hash="$5" command="$6" work="$7"
    local old_id new_id version size
    say "step 3/3: docker build $tag FROM $base"
    old_id="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
    if ! docker build --force-rm --build-arg "BASE=$base" --label "$LABEL=$hash" \
        -f "$dockerfile" -t "$tag" "$context" </dev/null >"$work/build.log" 2>&1; then
        tail -n 40 "$work/build.log" >&2
        die "docker build failed (log above)"
    fi
    version="$(docker run --rm --entrypoint "$command" "$tag" --version </dev/null)" \
        || die "the built image cannot run $command --version"
    new_id="$(docker image inspect --format '{{.Id}}' "$tag")"
    if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
        docker rmi "$old_id" >/dev/null 2>&1 || true
    fi
    size="$(docker image inspect --format '{{.Size}}' "$tag")"
    say "built $tag ($version) in $(($(date +%s) - START)) s, $((size / 1000000)) MB"
}
