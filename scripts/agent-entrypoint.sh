#!/bin/sh
# Entry point of the agent image: started as root (the default), hand the state directory and the
# Docker socket's group to the octotui-agent user, then run `octotui-agent ARGS...` as that user.
# A bind-mounted state directory is created by the engine as root, and the socket's group id differs
# from host to host: doing both here keeps the documented `docker run` a single line.
set -eu

if [ "$(id -u)" != "0" ]; then
    exec octotui-agent "$@"
fi

state="${OCTOTUI_STATE_DIR:-/var/lib/octotui-agent}"
mkdir -p "$state"
# Results written by JMeter containers (root) included: the agent removes work folders itself.
find "$state" -xdev \( ! -user octotui-agent -o ! -group octotui-agent \) -exec chown -h octotui-agent:octotui-agent {} +
chmod 0700 "$state"

groups="octotui-agent"
socket="${DOCKER_HOST:-unix:///var/run/docker.sock}"
socket="${socket#unix://}"
if [ -S "$socket" ]; then
    groups="$groups,$(stat -c %g "$socket")"
else
    echo "octotui-agent-entrypoint: no Docker socket at $socket: the agent will monitor only" >&2
fi

exec setpriv --reuid=octotui-agent --regid=octotui-agent --groups="$groups" --inh-caps=-all \
    --bounding-set=-all --no-new-privs env HOME="$state" octotui-agent "$@"
