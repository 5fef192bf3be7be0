#!/usr/bin/env bash
# Install the real programs the tests start on loopback, all from Debian's packages:
#   tinyproxy (a real HTTP proxy with CONNECT), openssl (a throwaway CA), docker-registry (a real
#   registry, as none on the internet is reachable) with apache2-utils' htpasswd (its bcrypt logins),
#   chromium (the HTML report opened headless), postgresql (the replicas' shared store and the
#   postgresql monitor), haproxy (in front of the replicas), nginx (the stub_status monitor),
#   openssh-server (a second sshd on a loopback port, for the linux-ssh monitor) and
#   prometheus-node-exporter (the prometheus monitor).
# No service is started by the install (a policy-rc.d refuses it): each test starts its own
# instance with a config of its own, and ends it. Idempotent: nothing is done when all are present.
# Needs root to install. Reads no standard input.
set -euo pipefail

say() { echo "test-tools: $*"; }
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | head -n 1; }

need=()
have tinyproxy || need+=(tinyproxy-bin)
have openssl || need+=(openssl)
have docker-registry || need+=(docker-registry)
have htpasswd || need+=(apache2-utils)
have chromium || need+=(chromium)
[ -n "$(pg_bin)" ] || need+=(postgresql)
have haproxy || need+=(haproxy)
have nginx || need+=(nginx-light)
have sshd || need+=(openssh-server)
have prometheus-node-exporter || need+=(prometheus-node-exporter)
if [ "${#need[@]}" -eq 0 ]; then
    say "all present (tinyproxy, openssl, docker-registry, htpasswd, chromium, postgresql, haproxy, nginx, sshd, node-exporter), nothing to do"
    exit 0
fi
[ "$(id -u)" = "0" ] || { echo "test-tools: error: installing ${need[*]} needs root: sudo bash $0" >&2; exit 1; }
say "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep the packages' own services from starting (nginx on :80, a postgresql cluster, sshd on :22):
# the tests start their own on loopback ports.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { [ "$made_policy" = 1 ] && rm -f "$policy"; }
trap cleanup EXIT
apt-get update -qq </dev/null
# tinyproxy-bin is the program without the system service (no daemon left running on this host).
apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
# A tool still missing fails here under CI (its tests would fail later, less clearly).
missing=0
for tool in tinyproxy openssl docker-registry htpasswd chromium haproxy nginx sshd prometheus-node-exporter; do
    if ! have "$tool"; then
        echo "test-tools: error: $tool is still missing after the install" >&2
        missing=1
    fi
done
[ -n "$(pg_bin)" ] || { echo "test-tools: error: postgresql's server is still missing after the install" >&2; missing=1; }
[ "$missing" = 1 ] && [ "${CI:-}" = "true" ] && exit 1
say "installed ${need[*]}"
