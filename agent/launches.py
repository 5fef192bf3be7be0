"""What a launch is made of: the checks on its command, JMeter's arguments, the plan on disk, the
container's configuration and labels; and JMeter's stop listener (its port, the ``StopTestNow`` datagram).
"""

from __future__ import annotations

import logging
import random
import re
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.engine import Engine
from agent.records import LaunchError, Tracked
from octotui.protocol import (
    LABEL_AGENT,
    LABEL_COMMAND,
    LABEL_CONTAINER,
    LABEL_MANAGED,
    LABEL_TEST,
    RESERVED_PROPERTY_PREFIXES,
    Command,
    LaunchSpec,
    reserved_property,
)

log = logging.getLogger("octotui.agent.containers")

#: The agent's own label: the UDP port JMeter listens on for StopTestNow.
LABEL_SHUTDOWN_PORT = "io.octotui.shutdown-port"
#: The agent's own label: the random instance id of the state dir that launched the container. An
#: agent adopts only containers of its own instance (two agents handed one id never share them).
LABEL_INSTANCE = "io.octotui.instance"
#: Prefixes of the JMeter properties the agent sets itself (its results, its stop and its live
#: figures depend on them): the contract's list, which the server refuses with 422. A launch that
#: still sets one (from an older server) is refused here too.
RESERVED_PROPERTIES: tuple[str, ...] = RESERVED_PROPERTY_PREFIXES
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SAFE_PLAN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range, so clients' sockets never take them


def reserved_properties(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that :data:`RESERVED_PROPERTIES` keeps for the agent, sorted."""
    return sorted(name for name in names if reserved_property(name) is not None)


def checked_spec(command: Command) -> LaunchSpec:
    """The launch spec of ``command``; :class:`LaunchError` when the agent must not run it."""
    spec = command.launch
    if spec is None:
        raise LaunchError("launch command without a launch spec")
    cid = command.container_id
    if not SAFE_ID.match(cid) or spec.container_id != cid:
        raise LaunchError(f"invalid container id {cid!r}")
    if not _SAFE_PLAN.match(spec.plan_name):
        raise LaunchError(f"invalid plan name {spec.plan_name!r}: a plain file name is expected")
    reserved = reserved_properties(spec.properties)
    if reserved:
        raise LaunchError(f"properties set by the agent itself cannot be overridden: {', '.join(reserved)}")
    return spec


def jmeter_args(spec: LaunchSpec, port: int) -> list[str]:
    """The arguments given to the image's ``jmeter`` entrypoint for one launch."""
    args = [
        "-n",
        "-t", f"/plan/{spec.plan_name}",
        "-l", "/results/results.jtl",
        "-j", "/results/jmeter.log",
        "-Jjmeter.save.saveservice.output_format=csv",
        "-Jjmeter.save.saveservice.print_field_names=true",
        # every row written at once (JMeter buffers them otherwise: minutes at a low rate), so
        # the agent's follower has a sample's figures within a second
        "-Jjmeter.save.saveservice.autoflush=true",
        # JMeter 2.13 writes the failureMessage column (an assertion's message) only when asked
        "-Jjmeter.save.saveservice.assertion_results_failure_message=true",
        f"-Jjmeterengine.nongui.port={port}",
        f"-Jjmeterengine.nongui.maxport={port}",
        "-Jsummariser.interval=5",
    ]  # fmt: skip
    args += [f"-J{key}={value}" for key, value in spec.properties.items()]
    return args


def write_plan(plan_dir: Path, results_dir: Path, spec: LaunchSpec) -> None:
    """Write the plan where the container reads it, and make its results folder (in a thread)."""
    plan_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    results_dir.chmod(0o777)  # the image may run JMeter as another user
    (plan_dir / spec.plan_name).write_text(spec.plan, encoding="utf-8")


def container_config(
    tracked: Tracked, spec: LaunchSpec, agent_id: str, instance: str | None, sources: tuple[Path, Path]
) -> dict[str, Any]:
    """The engine's create body for ``tracked``; ``sources`` are the host paths of its plan and results."""
    assert tracked.shutdown_port is not None
    labels = {
        LABEL_MANAGED: "true",
        LABEL_TEST: tracked.test_id,
        LABEL_CONTAINER: tracked.container_id,
        LABEL_AGENT: agent_id,
        LABEL_COMMAND: tracked.command_id or "",
        LABEL_SHUTDOWN_PORT: str(tracked.shutdown_port),
    }
    if instance:
        labels[LABEL_INSTANCE] = instance
    host_config: dict[str, Any] = {
        "Binds": [f"{sources[0]}:/plan:ro", f"{sources[1]}:/results:rw"],
        "NetworkMode": tracked.network_mode,
    }
    if spec.cpu_limit:
        host_config["NanoCpus"] = int(spec.cpu_limit * 1e9)
    if spec.memory_limit:
        host_config["Memory"] = spec.memory_limit
    return {
        "Image": spec.image,
        "Cmd": jmeter_args(spec, tracked.shutdown_port),
        "Labels": labels,
        "HostConfig": host_config,
        "Tty": False,  # the log stream is then multiplexed (stdout, stderr), which engine.logs unwraps
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False, "OpenStdin": False,
    }  # fmt: skip


def free_port(taken: set[int]) -> int:
    """A UDP port outside ``taken`` that nothing listens on here now, for JMeter's shutdown listener."""
    for _ in range(200):
        port = random.randint(*_PORT_RANGE)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port
    raise LaunchError("no free UDP port for JMeter's shutdown listener")


async def send_stop_now(engine: Engine | None, tracked: Tracked) -> bool:
    """Send ``StopTestNow`` to JMeter's shutdown listener; False when it cannot be reached."""
    if not tracked.shutdown_port:
        return False
    host = "127.0.0.1"
    if tracked.network_mode != "host":
        try:
            assert engine is not None and tracked.docker_id is not None
            networks = (await engine.inspect(tracked.docker_id))["NetworkSettings"]["Networks"]
            host = next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), "")
        except Exception:
            host = ""
        if not host:
            return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # a datagram to a local address: sent at once or refused
            sock.sendto(b"StopTestNow", (host, tracked.shutdown_port))
    except OSError as exc:
        log.debug("StopTestNow to %s:%s failed: %s", host, tracked.shutdown_port, exc)
        return False
    return True
