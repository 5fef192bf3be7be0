#!/usr/bin/env bash
# N octotui server replicas on one PostgreSQL behind HAProxy, on this Debian host:
#
#   bash deploy/cluster.sh up [N]     (default 2; `make cluster REPLICAS=N`)
#   bash deploy/cluster.sh status
#   bash deploy/cluster.sh down       (the data stays in $OCTOTUI_CLUSTER_DIR; `up` again resumes it)
#
# - PostgreSQL: Debian's (apt-get install postgresql), a cluster of its own in $OCTOTUI_CLUSTER_DIR/pg
#   on 127.0.0.1:$OCTOTUI_CLUSTER_PG_PORT (5433), database and role "octotui", a generated password.
# - Replicas: containers of octotui-server:latest (`make server-image`), host network, replica i on
#   127.0.0.1:$((OCTOTUI_CLUSTER_REPLICA_BASE + i)) (8431, 8432…), each with its own data dir; one
#   admin token for all, generated once in $OCTOTUI_CLUSTER_DIR/admin.token, and one secrets key (the
#   Fernet key of monitors' credentials) for all, generated once in $OCTOTUI_CLUSTER_DIR/secrets.key and
#   mounted read-only in every replica (--secrets-key-file): a replica with another key refuses to start.
# - HAProxy: Debian's (apt-get install haproxy), deploy/haproxy.cfg with one server line per replica,
#   on $OCTOTUI_CLUSTER_BIND (:8427, every interface): the URL agents and dashboards use.
#
# A rolling upgrade: `docker restart octotui-replica1`, wait for HAProxy to show it UP again (status),
# then the next. Needs root only where PostgreSQL must run as its own user (runuser).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${OCTOTUI_CLUSTER_DIR:-/var/lib/octotui-cluster}"
PG_PORT="${OCTOTUI_CLUSTER_PG_PORT:-5433}"
REPLICA_BASE="${OCTOTUI_CLUSTER_REPLICA_BASE:-8430}"
BIND="${OCTOTUI_CLUSTER_BIND:-:8427}"
# The URL agents and dashboards use (HAProxy's): what the replicas give in /info and in the
# providers' install lines, never their own loopback address.
PUBLIC_URL="${OCTOTUI_PUBLIC_URL:-http://$(hostname -f 2>/dev/null || hostname):${BIND##*:}}"
IMAGE="${OCTOTUI_SERVER_IMAGE:-octotui-server:latest}"
PG_BIN="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"

say() { echo "cluster: $*"; }
die() {
    echo "cluster: error: $*" >&2
    exit 1
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
replicas() { docker ps -a --filter label=io.octotui.cluster="$DIR" --format '{{.Names}}' | sort; }

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
        touch "$DIR/postgres.log" && [ "$(id -u)" != 0 ] || chown postgres "$DIR/postgres.log"
        as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg" -l "$DIR/postgres.log" -w start >/dev/null
    fi
    PGPASSWORD="$(cat "$DIR/pg.password")" "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U octotui -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'octotui'" | grep -q 1 \
        || PGPASSWORD="$(cat "$DIR/pg.password")" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U octotui octotui
    say "PostgreSQL on 127.0.0.1:$PG_PORT (data $DIR/pg)"
}

replicas_up() {
    local n="$1" i port
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE (make server-image)"
    [ -f "$DIR/admin.token" ] || (umask 077 && printf 'octo_%s\n' "$(head -c 24 /dev/urandom | base64 | tr -d '/+=')" >"$DIR/admin.token")
    # A Fernet key: 32 random bytes, URL-safe base64. Never in the database (only its fingerprint).
    [ -f "$DIR/secrets.key" ] || (umask 077 && head -c 32 /dev/urandom | base64 | tr '+/' '-_' >"$DIR/secrets.key")
    local dsn="postgresql://octotui:$(cat "$DIR/pg.password")@127.0.0.1:$PG_PORT/octotui"
    for i in $(seq 1 "$n"); do
        port=$((REPLICA_BASE + i))
        docker rm -f "octotui-replica$i" >/dev/null 2>&1 || true
        mkdir -p "$DIR/replica$i"
        docker run -d --name "octotui-replica$i" --label io.octotui.cluster="$DIR" --restart unless-stopped \
            --network host --user "$(id -u):$(id -g)" -v "$DIR/replica$i:/var/lib/octotui" \
            -v "$DIR/secrets.key:/etc/octotui/secrets.key:ro" -e OCTOTUI_SECRETS_KEY_FILE=/etc/octotui/secrets.key \
            -e OCTOTUI_DATABASE="$dsn" -e OCTOTUI_ADMIN_TOKEN="$(cat "$DIR/admin.token")" \
            -e OCTOTUI_PUBLIC_URL="$PUBLIC_URL" \
            "$IMAGE" --host 127.0.0.1 --port "$port" >/dev/null
        say "replica $i: container octotui-replica$i on 127.0.0.1:$port"
    done
}

haproxy_up() {
    local n="$1" i
    command -v haproxy >/dev/null || die "no haproxy here (apt-get install haproxy)"
    {
        grep -v '^[[:space:]]*server ' "$HERE/haproxy.cfg" | sed "s|^\([[:space:]]*\)bind .*|\1bind $BIND|"
        for i in $(seq 1 "$n"); do echo "    server replica$i 127.0.0.1:$((REPLICA_BASE + i)) check cookie replica$i"; done
    } >"$DIR/haproxy.cfg"
    sed -i "s|^global$|global\n    stats socket $DIR/haproxy.sock mode 600 level admin|" "$DIR/haproxy.cfg"
    haproxy -c -q -f "$DIR/haproxy.cfg" || die "haproxy refuses $DIR/haproxy.cfg"
    haproxy_down
    # maxconn 10000 takes ~20,000 file descriptors: raise the limit, or fit maxconn into the hard one
    local fit=()
    if ! ulimit -n 20100 2>/dev/null; then
        fit=(-n $((($(ulimit -Hn) - 100) / 2)))
        say "HAProxy: the file descriptor limit is $(ulimit -Hn): maxconn ${fit[1]}"
    fi
    haproxy -D -p "$DIR/haproxy.pid" "${fit[@]}" -f "$DIR/haproxy.cfg"
    say "HAProxy on $BIND in front of $n replicas (config $DIR/haproxy.cfg)"
}

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
    pg_up
    replicas_up "$N"
    haproxy_up "$N"
    say "up: agents and dashboards use http://HOST:${BIND##*:}, e.g. octotui --server http://127.0.0.1:${BIND##*:} --token \$(cat $DIR/admin.token)"
    ;;
status) status ;;
down)
    haproxy_down
    for name in $(replicas); do docker rm -f "$name" >/dev/null && say "removed $name"; done
    if [ -n "$PG_BIN" ] && [ -f "$DIR/pg/PG_VERSION" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg" -m fast -w stop >/dev/null 2>&1 || true
    fi
    say "down (data kept in $DIR)"
    ;;
*) die "usage: $0 up [N] | status | down" ;;
esac
