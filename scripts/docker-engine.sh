#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io and start dockerd when needed.
# Idempotent; a developer's running engine is left alone. Without root and without an engine it
# explains what to do and exits 0 outside CI (the Docker tests then skip), 1 in CI (they must run).
set -uo pipefail

if docker info >/dev/null 2>&1; then
    exit 0
fi

fail() {
    echo "docker-engine: $*" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    echo "docker-engine: continuing; tests that need Docker will be skipped" >&2
    exit 0
}

if [ "$(id -u)" != "0" ]; then
    fail "no Docker engine answers and this is not root: install docker.io and start dockerd"
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker-engine: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq docker.io >/dev/null || fail "apt-get install docker.io failed"
fi

echo "docker-engine: starting dockerd (log in /var/log/octotui-dockerd.log)"
nohup dockerd >/var/log/octotui-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        echo "docker-engine: engine $(docker version --format '{{.Server.Version}}') ready"
        exit 0
    fi
    sleep 1
done
tail -n 20 /var/log/octotui-dockerd.log >&2
fail "dockerd did not answer within 60 s"
