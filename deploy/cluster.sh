#!/usr/bin/env bash
# N octotui server replicas on one PostgreSQL behind HAProxy, on this Debian host:
#
#   bash deploy/cluster.sh up [N]     (default 2; `make cluster REPLICAS=N`)
#   bash deploy/cluster.sh status
#   bash deploy/cluster.sh down       (the data stays in $OCTOTUI_CLUSTER_DIR; `up` again resumes it)
#
# - PostgreSQL: Debian's (apt-get install postgresql), a cluster of its own in $OCTOTUI_CLUSTER_DIR/pg
#   on 127.0.0.1:$OCTOTUI_CLUSTER_PG_PORT (5433), database and role "octotui", a generated password.
# - Replicas: containers of octotui-server:latest (`make server-image`), host network, named
#   $OCTOTUI_CLUSTER_NAME-replicaI (octotui-replica1…: give a second cluster on this host another name,
#   dir and ports), replica i on 127.0.0.1:$((OCTOTUI_CLUSTER_REPLICA_BASE + i)) (8431, 8432…), each with
#   its own data dir; one admin token for all, generated once in $OCTOTUI_CLUSTER_DIR/admin.token, and
#   one secrets key (the Fernet key of monitors' credentials) for all, generated once in
#   $OCTOTUI_CLUSTER_DIR/secrets.key and mounted read-only in every replica (--secrets-key-file): a
#   replica with another key refuses to start.
# - HAProxy: Debian's (apt-get install haproxy), deploy/haproxy.cfg with one server line per replica,
#   on $OCTOTUI_CLUSTER_BIND (default 127.0.0.1:8427, this host only; `:8427` for every interface):
#   the URL agents and dashboards use. $OCTOTUI_PUBLIC_URL is the URL the replicas give agents and
#   dashboards (default: http://BIND's address, or `hostname -f` when BIND has none).
#
# `up` may be run again at any time: it starts what is missing (a stopped replica is started again),
# replaces a replica only when its image or settings changed, one at a time, taken out of HAProxy first
# and waited for until healthy before the next (a rolling upgrade: `make server-image` then `up N`),
# reloads HAProxy without dropping its connections, and stops the replicas above N (`up 2` after `up 3`).
# `down` stops every replica gracefully (`docker stop -t 30`: each writes what it holds), then HAProxy and
# PostgreSQL; the containers stay (their logs too) and `up` starts them again.
# Needs root only where PostgreSQL must run as its own user (runuser).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${OCTOTUI_CLUSTER_DIR:-/var/lib/octotui-cluster}"
PG_PORT="${OCTOTUI_CLUSTER_PG_PORT:-5433}"
REPLICA_BASE="${OCTOTUI_CLUSTER_REPLICA_BASE:-8430}"
NAME="${OCTOTUI_CLUSTER_NAME:-octotui}"
[[ "$NAME" =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ ]] || {
    echo "cluster: error: OCTOTUI_CLUSTER_NAME must be letters, digits, '_', '.', '-', got '$NAME'" >&2
    exit 1
}
BIND="${OCTOTUI_CLUSTER_BIND:-127.0.0.1:8427}"
# The URL agents and dashboards use (HAProxy's): what the replicas give in /info and in the
# providers' install lines, never their own loopback address.
BIND_HOST="${BIND%:*}"
PUBLIC_URL="${OCTOTUI_PUBLIC_URL:-http://${BIND_HOST:-$(hostname -f 2>/dev/null || hostname)}:${BIND##*:}}"
STOP_WAIT=30 # seconds a replica has to write what it holds when stopped (it needs 5 at most)
HEALTH_WAIT=90 # seconds a started replica has to answer its health check
IMAGE="${OCTOTUI_SERVER_IMAGE:-octotui-server:latest}"
PG_BIN="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"

say() { echo "cluster: $*"; }
die() {
    echo "cluster: error: $*" >&2
    exit 1
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# This cluster's replica containers, by number (the label of before names was the dir: still found).
replicas() {
    {
        docker ps -a --filter label=io.octotui.cluster="$NAME" --format '{{.Names}}'
        docker ps -a --filter label=io.octotui.cluster="$DIR" --format '{{.Names}}'
    } | sort -u -V
}
replica_name() { echo "$NAME-replica$1"; }
replica_number() { echo "${1##*-replica}"; }
# One command on HAProxy's admin socket (nothing when it is not running).
haproxy_cmd() {
    [ -S "$DIR/haproxy.sock" ] || return 0
    python3 - "$DIR/haproxy.sock" "$1" <<'PY' || true
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b"\n")
sys.stdout.write(b"".join(iter(lambda: s.recv(65536), b"")).decode())
PY
}
healthy() {
    python3 - "$1" <<'PY'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v1/health", timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}
wait_healthy() {
    local name="$1" port="$2" waited=0
    until healthy "$port"; do
        [ "$(docker inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ] \
            || die "$name stopped: docker logs $name"
        ((waited++ < HEALTH_WAIT)) || die "$name not healthy on 127.0.0.1:$port after ${HEALTH_WAIT} s: docker logs $name"
        sleep 1
    done
}

pg_up() {
    [ -n "$PG_BIN" ] || die "no PostgreSQL here (apt-get install postgresql)"
    mkdir -p "$DIR"
    if [ ! -f "$DIR/pg/PG_VERSION" ]; then
        [ -f "$DIR/pg.password" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DIR/pg.password")
        install -d -m 0700 "$DIR/pg"
        [ "$(id -u)" != 0 ] || chown postgres:postgres "$DIR/pg"
        pw="$(mktemp)" && cp "$DIR/pg.password" "$pw" && chmod 0644 "$pw"
        as_pg "$PG_BIN/initdb" -D "$DIR/pg" -U octotui --pwfile="$pw" -A scram-sha-256 >"$DIR/initdb.log"
        rm -f "$pw"
        printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = ''\n" "$PG_PORT" >>"$DIR/pg/postgresql.conf"
    fi
    if ! as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg" status >/dev/null 2>&1; then
        touch "$DIR/postgres.log"
        if [ "$(id -u)" = 0 ]; then chown postgres "$DIR/postgres.log"; fi
        as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg" -l "$DIR/postgres.log" -w start >/dev/null
    fi
    PGPASSWORD="$(cat "$DIR/pg.password")" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U octotui -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'octotui'" | grep -q 1 \
        || PGPASSWORD="$(cat "$DIR/pg.password")" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U octotui octotui
    say "PostgreSQL on 127.0.0.1:$PG_PORT (data $DIR/pg)"
}

# Refuses to touch containers of another cluster's dir that bear this cluster's names.
names_free() {
    local n="$1" i name have_dir
    for i in $(seq 1 "$n"); do
        name="$(replica_name "$i")"
        docker container inspect "$name" >/dev/null 2>&1 || continue
        have_dir="$(docker inspect --format '{{index .Config.Labels "io.octotui.cluster.dir"}}' "$name")"
        [ -z "$have_dir" ] || [ "$have_dir" = "$DIR" ] \
            || die "$name belongs to the cluster in $have_dir: give this one another OCTOTUI_CLUSTER_NAME"
    done
}

# Pass "start": creates the missing replicas 1..N, starts the stopped ones, each waited for until
# healthy; a replica whose image or settings changed is left as it is. Pass "replace": replaces those,
# one at a time, out of HAProxy meanwhile (the others serve), waited for until healthy.
replicas_up() {
    local n="$1" pass="$2" i port name dsn image_id config
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE (make server-image)"
    image_id="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
    [ -f "$DIR/admin.token" ] || (umask 077 && printf 'octo_%s\n' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >"$DIR/admin.token")
    # A Fernet key: 32 random bytes, URL-safe base64. Never in the database (only its fingerprint).
    [ -f "$DIR/secrets.key" ] || (umask 077 && head -c 32 /dev/urandom | base64 | tr '+/' '-_' >"$DIR/secrets.key")
    dsn="postgresql://octotui:$(cat "$DIR/pg.password")@127.0.0.1:$PG_PORT/octotui"
    for i in $(seq 1 "$n"); do
        port=$((REPLICA_BASE + i))
        name="$(replica_name "$i")"
        local run=(--network host --user "$(id -u):$(id -g)" -v "$DIR/replica$i:/var/lib/octotui"
            -v "$DIR/secrets.key:/etc/octotui/secrets.key:ro" -e OCTOTUI_SECRETS_KEY_FILE=/etc/octotui/secrets.key
            -e OCTOTUI_DATABASE="$dsn" -e OCTOTUI_ADMIN_TOKEN="$(cat "$DIR/admin.token")"
            -e OCTOTUI_PUBLIC_URL="$PUBLIC_URL" "$IMAGE" --host 127.0.0.1 --port "$port")
        # What the container was made with (its settings, secrets included, as a digest only).
        config="$(printf '%s\0' "${run[@]}" | sha256sum | cut -c1-16)"
        if docker container inspect "$name" >/dev/null 2>&1; then
            if [ "$(docker inspect --format '{{.Image}}' "$name")" = "$image_id" ] \
                && [ "$(docker inspect --format '{{index .Config.Labels "io.octotui.config"}}' "$name")" = "$config" ]; then
                if [ "$pass" = replace ]; then
                    continue
                elif [ "$(docker inspect --format '{{.State.Running}}' "$name")" != true ]; then
                    docker start "$name" >/dev/null
                    wait_healthy "$name" "$port"
                    say "replica $i: $name started again on 127.0.0.1:$port"
                else
                    say "replica $i: $name running on 127.0.0.1:$port, unchanged"
                fi
                continue
            fi
            [ "$pass" = replace ] || continue
            say "replica $i: $name's image or settings changed: replacing it, out of HAProxy meanwhile"
            haproxy_cmd "set server replicas/replica$i state maint" >/dev/null
            docker stop -t "$STOP_WAIT" "$name" >/dev/null
            docker rm "$name" >/dev/null
        elif [ "$pass" = replace ]; then
            continue
        fi
        mkdir -p "$DIR/replica$i"
        docker run -d --name "$name" --label io.octotui.cluster="$NAME" --label io.octotui.cluster.dir="$DIR" \
            --label io.octotui.config="$config" --restart unless-stopped "${run[@]}" >/dev/null
        wait_healthy "$name" "$port"
        haproxy_cmd "set server replicas/replica$i state ready" >/dev/null
        say "replica $i: container $name on 127.0.0.1:$port, healthy"
    done
}

# The replicas numbered above N: out of HAProxy already (its config names 1..N), stopped gracefully.
replicas_above() {
    local n="$1" name extra=()
    for name in $(replicas); do
        [ "$(replica_number "$name")" -le "$n" ] 2>/dev/null || extra+=("$name")
    done
    [ "${#extra[@]}" = 0 ] && return 0
    for name in "${extra[@]}"; do
        if [ "$(docker inspect --format '{{.State.Running}}' "$name")" = true ]; then
            docker stop -t "$STOP_WAIT" "$name" >/dev/null
            say "stopped $name (above $n replicas; its container and data stay: docker rm $name to drop it)"
        fi
    done
}

haproxy_up() {
    local n="$1" i
    command -v haproxy >/dev/null || die "no haproxy here (apt-get install haproxy)"
    {
        grep -v '^[[:space:]]*server ' "$HERE/haproxy.cfg" | sed "s|^\([[:space:]]*\)bind .*|\1bind $BIND|"
        for i in $(seq 1 "$n"); do echo "    server replica$i 127.0.0.1:$((REPLICA_BASE + i)) check cookie replica$i"; done
    } >"$DIR/haproxy.cfg.new"
    sed -i "s|^global$|global\n    stats socket $DIR/haproxy.sock mode 600 level admin expose-fd listeners|" "$DIR/haproxy.cfg.new"
    haproxy -c -q -f "$DIR/haproxy.cfg.new" || die "haproxy refuses $DIR/haproxy.cfg.new"
    local old=()
    if haproxy_running; then
        if cmp -s "$DIR/haproxy.cfg.new" "$DIR/haproxy.cfg"; then
            rm -f "$DIR/haproxy.cfg.new"
            say "HAProxy on $BIND in front of $n replicas, unchanged"
            return 0
        fi
        old=(-x "$DIR/haproxy.sock" -sf "$(cat "$DIR/haproxy.pid")") # a reload: the old one finishes its connections
    fi
    mv "$DIR/haproxy.cfg.new" "$DIR/haproxy.cfg"
    # maxconn 10000 takes ~20,000 file descriptors: raise the limit, or fit maxconn into the hard one
    local fit=()
    if ! ulimit -n 20100 2>/dev/null; then
        fit=(-n $((($(ulimit -Hn) - 100) / 2)))
        say "HAProxy: the file descriptor limit is $(ulimit -Hn): maxconn ${fit[1]}"
    fi
    haproxy -D -p "$DIR/haproxy.pid" "${fit[@]}" -f "$DIR/haproxy.cfg" "${old[@]}"
    say "HAProxy on $BIND in front of $n replicas (config $DIR/haproxy.cfg${old[*]:+, reloaded})"
}

haproxy_running() { [ -f "$DIR/haproxy.pid" ] && kill -0 "$(cat "$DIR/haproxy.pid")" 2>/dev/null; }

haproxy_down() {
    if [ -f "$DIR/haproxy.pid" ]; then
        kill "$(cat "$DIR/haproxy.pid")" 2>/dev/null || true
        rm -f "$DIR/haproxy.pid"
    fi
}

status() {
    local name
    for name in $(replicas); do say "$name: $(docker inspect --format '{{.State.Status}}' "$name")"; done
    if [ -S "$DIR/haproxy.sock" ] && command -v python3 >/dev/null; then
        python3 - "$DIR/haproxy.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
data = b"".join(iter(lambda: s.recv(65536), b"")).decode().splitlines()
head = data[0].lstrip("# ").split(",")
for row in data[1:]:
    cells = row.split(",")
    if len(cells) > 1 and cells[head.index("svname")].startswith("replica"):
        print(f"cluster: haproxy sees {cells[head.index('svname')]} {cells[head.index('status')]}")
PY
    fi
}

case "${1:-}" in
up)
    N="${2:-2}"
    [[ "$N" =~ ^[1-9][0-9]?$ ]] || die "N must be a number of replicas from 1 to 99, got '$N'"
    names_free "$N"
    pg_up
    replicas_up "$N" start
    haproxy_up "$N"
    replicas_above "$N"
    replicas_up "$N" replace
    say "up: agents and dashboards use $PUBLIC_URL, e.g. octotui --server $PUBLIC_URL --token \$(cat $DIR/admin.token)"
    ;;
status) status ;;
down)
    haproxy_down
    running=()
    for name in $(replicas); do
        [ "$(docker inspect --format '{{.State.Running}}' "$name")" != true ] || running+=("$name")
    done
    if [ "${#running[@]}" != 0 ]; then # together, each writing what it holds (SIGTERM, then $STOP_WAIT s)
        docker stop -t "$STOP_WAIT" "${running[@]}" >/dev/null
        say "stopped ${running[*]} (containers and logs kept: docker logs NAME)"
    fi
    if [ -n "$PG_BIN" ] && [ -f "$DIR/pg/PG_VERSION" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg" -m fast -w stop >/dev/null 2>&1 || true
    fi
    say "down (data kept in $DIR)"
    ;;
*) die "usage: $0 up [N] | status | down" ;;
esac
