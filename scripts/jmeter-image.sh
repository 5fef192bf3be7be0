#!/usr/bin/env bash
# Build the JMeter image the tests use, without any registry: Debian's JMeter 2.13 in a debootstrapped
# bookworm, imported with `docker import`. Idempotent: an existing image is kept and nothing is done.
#
#   bash scripts/jmeter-image.sh [TAG]          (default TAG: octotui-jmeter:local)
#
# Debian's JMeter 2.13 cannot load any plan with Debian's XStream 1.4.20 (ForbiddenClassException):
# scripts/jmeter-xstream/ holds the small class that grants XStream's permissions through JMeter's
# own saveservice.properties hook. Needs root (debootstrap), a Docker engine and a Debian mirror
# (the one this machine's apt uses, or OCTOTUI_DEBIAN_MIRROR). Reads no standard input.
set -euo pipefail

TAG="${1:-octotui-jmeter:local}"
SUITE="bookworm"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JAVA_SRC="$HERE/jmeter-xstream/OctotuiXStreamPermission.java"
JAVA_CLASS="org.octotui.jmeter.OctotuiXStreamPermission"
LOCK_FILE="/var/lock/octotui-jmeter-image.lock"
START="$(date +%s)"

say() { echo "jmeter-image: $*"; }
die() {
    echo "jmeter-image: error: $*" >&2
    exit 1
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
# shellcheck source=apt-mirror.sh
. "$HERE/apt-mirror.sh"

if image_exists "$TAG"; then
    say "image $TAG already exists, nothing to do"
    exit 0
fi

docker info >/dev/null 2>&1 || die "no Docker engine answers (run scripts/docker-engine.sh first)"
[ "$(id -u)" = "0" ] || die "building $TAG needs root (debootstrap); run: sudo bash $0 $TAG"

# One build at a time; a build that finished while we waited is reused.
exec 9>"$LOCK_FILE"
flock 9
if image_exists "$TAG"; then
    say "image $TAG was built meanwhile, nothing to do"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
need_packages=()
command -v debootstrap >/dev/null 2>&1 || need_packages+=(debootstrap)
if ! command -v javac >/dev/null 2>&1 || ! command -v jar >/dev/null 2>&1; then
    need_packages+=(openjdk-17-jdk-headless)
fi
if [ "${#need_packages[@]}" -gt 0 ]; then
    say "installing build tools on this host: ${need_packages[*]}"
    apt-get update -qq </dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${need_packages[@]}" </dev/null >/dev/null \
        || die "apt-get install ${need_packages[*]} failed"
fi

# The mirror this machine's apt already uses (scripts/apt-mirror.sh), or the one named.
MIRROR="${OCTOTUI_DEBIAN_MIRROR:-}"
[ -n "$MIRROR" ] || MIRROR="$(debian_mirror "$SUITE")" || die "no Debian mirror to debootstrap $SUITE from (above)"

BUILD_DIR="$(mktemp -d /var/tmp/octotui-jmeter.XXXXXX)"
ROOTFS="$BUILD_DIR/rootfs"
BUILD_TAG="octotui-jmeter-build:$(basename "$BUILD_DIR" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' '-')"

cleanup() {
    local code=$? mnt
    set +e
    # A failed debootstrap can leave proc/sys mounted in the rootfs: unmount before deleting anything.
    if [ -d "$BUILD_DIR" ]; then
        for mnt in $(awk '{print $2}' /proc/mounts | grep -F "$BUILD_DIR/" | sort -r); do
            umount -l "$mnt"
        done
        rm -rf --one-file-system "$BUILD_DIR"
    fi
    docker rmi "$BUILD_TAG" >/dev/null 2>&1
    exit "$code"
}
trap cleanup EXIT

say "building $TAG from Debian $SUITE (mirror $MIRROR) in $BUILD_DIR"
say "step 1/5: debootstrap minbase with openjdk-17-jre-headless, jmeter, jmeter-http (about a minute)"
if ! debootstrap --variant=minbase --include=openjdk-17-jre-headless,jmeter,jmeter-http \
    "$SUITE" "$ROOTFS" "$MIRROR" </dev/null >"$BUILD_DIR/debootstrap.log" 2>&1; then
    tail -n 30 "$BUILD_DIR/debootstrap.log" >&2
    die "debootstrap failed (log above)"
fi
say "step 1/5: done in $(($(date +%s) - START)) s"

# Resolve a path inside the rootfs, following symlinks as the container would see them.
in_rootfs() {
    local path="$1" target i
    for i in $(seq 1 10); do
        [ -L "$ROOTFS$path" ] || break
        target="$(readlink "$ROOTFS$path")"
        case "$target" in
            /*) path="$target" ;;
            *) path="$(dirname "$path")/$target" ;;
        esac
    done
    echo "$ROOTFS$path"
}

JMETER_HOME="/usr/share/jmeter"
SAVESERVICE="$(in_rootfs "$JMETER_HOME/bin/saveservice.properties")"
USER_PROPS="$(in_rootfs "$JMETER_HOME/bin/user.properties")"
XSTREAM_JAR="$(in_rootfs /usr/share/java/xstream.jar)"
[ -f "$SAVESERVICE" ] || die "no saveservice.properties in the rootfs (looked at $SAVESERVICE)"
[ -f "$XSTREAM_JAR" ] || die "no xstream.jar in the rootfs (looked at $XSTREAM_JAR)"
[ -d "$ROOTFS$JMETER_HOME/lib/ext" ] || die "no $JMETER_HOME/lib/ext in the rootfs"

say "step 2/5: compiling the XStream permission class against $(basename "$(readlink -f "$XSTREAM_JAR")")"
mkdir -p "$BUILD_DIR/classes"
javac --release 17 -nowarn -cp "$XSTREAM_JAR" -d "$BUILD_DIR/classes" "$JAVA_SRC"
jar cf "$ROOTFS$JMETER_HOME/lib/ext/octotui-xstream-permission.jar" -C "$BUILD_DIR/classes" .
{
    echo
    echo "# octotui: grant XStream's type permissions, which JMeter 2.13 never sets (scripts/jmeter-xstream/)"
    echo "_$JAVA_CLASS=collection"
} >>"$SAVESERVICE"
# JMeter 2.13 starts no summariser unless named; 5.x names it "summary" by default. Same output for both.
{
    echo
    echo "# octotui: print summariser lines in non-GUI mode, as JMeter 5.x does by default"
    echo "summariser.name=summary"
} >>"$USER_PROPS"

say "step 3/5: trimming the rootfs and adding /plan and /results"
mkdir -p "$ROOTFS/plan" "$ROOTFS/results"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*

say "step 4/5: importing into Docker"
tar -C "$ROOTFS" -c . | docker import \
    -c 'ENTRYPOINT ["/usr/bin/jmeter"]' -c 'WORKDIR /results' -c 'ENV LANG=C.UTF-8' \
    -m "Debian $SUITE JMeter 2.13 for octotui tests" - "$BUILD_TAG" >/dev/null

say "step 5/5: checking that JMeter loads a plan and runs it"
CHECK_DIR="$BUILD_DIR/check"
mkdir -p "$CHECK_DIR"
cp "$HERE/../examples/http-get.jmx" "$CHECK_DIR/check.jmx"
# Nothing listens on port 9 (discard) here: the samples fail, but the plan must load and run to the end.
if ! timeout 120 docker run --rm --network host -v "$CHECK_DIR:/plan:ro" "$BUILD_TAG" \
    -n -t /plan/check.jmx -Jusers=1 -Jduration=2 -Jport=9 -Jsummariser.interval=1 \
    </dev/null >"$BUILD_DIR/check.log" 2>&1; then
    cat "$BUILD_DIR/check.log" >&2
    die "JMeter failed to run the check plan (output above)"
fi
if ! grep -q "^summary = " "$BUILD_DIR/check.log" || grep -q "Exception" "$BUILD_DIR/check.log"; then
    cat "$BUILD_DIR/check.log" >&2
    die "JMeter ran but printed no final summary or an exception (output above)"
fi
docker tag "$BUILD_TAG" "$TAG"

SIZE="$(docker image inspect --format '{{.Size}}' "$TAG")"
say "built $TAG in $(($(date +%s) - START)) s, $((SIZE / 1000000)) MB"
