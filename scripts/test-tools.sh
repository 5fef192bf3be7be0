#!/usr/bin/env bash
# Install what the proxy, TLS and image-pull tests need on this host: tinyproxy (a real HTTP proxy
# with CONNECT, started by the tests on loopback with a config of their own), openssl (a throwaway
# CA), docker-registry (a real registry on loopback, as none on the internet is reachable) and
# apache2-utils' htpasswd (the bcrypt logins of that registry in the private-registry tests) and
# Debian's chromium (the HTML report opened headless in tests/test_exports.py).
# Idempotent: nothing is done when all are present. Needs root to install. Reads no standard input.
set -euo pipefail

say() { echo "test-tools: $*"; }

need=()
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/sbin/tinyproxy ] || [ -x /usr/bin/tinyproxy ] || need+=(tinyproxy-bin)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ "${#need[@]}" -eq 0 ]; then
    say "tinyproxy, openssl, docker-registry, htpasswd and chromium present, nothing to do"
    exit 0
fi
[ "$(id -u)" = "0" ] || { echo "test-tools: error: installing ${need[*]} needs root: sudo bash $0" >&2; exit 1; }
say "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
# tinyproxy-bin is the program without the system service (no daemon left running on this host).
apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
# A tool still missing fails here under CI (its tests would fail later, less clearly).
for tool in tinyproxy openssl docker-registry htpasswd chromium; do
    if ! command -v "$tool" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$tool" ]; then
        echo "test-tools: error: $tool is still missing after the install" >&2
        [ "${CI:-}" = "true" ] && exit 1
    fi
done
say "installed ${need[*]}"
