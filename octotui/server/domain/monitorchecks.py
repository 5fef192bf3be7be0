"""A monitor's settings checked before anything changes: its agent, its kind's target and
credentials, its thresholds, its name and its agent's count of monitors. Each refusal says what is
wrong and never repeats a credential or the target (which might hold one)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from octotui.protocol.monitors import MAX_MONITORS_PER_AGENT, Threshold
from octotui.server.domain.state import ServerState
from octotui.server.errors import Conflict, Invalid

URL_KINDS = ("prometheus", "http", "nginx", "apache")
#: ``host[:port]`` (a bracketed IPv6 address too), then for postgresql an optional ``/database``.
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*)(?::([0-9]{1,5}))?")
_DATABASE = re.compile(r"[A-Za-z0-9_$.-]{1,63}")


def _check_host_port(kind: str, target: str, database: bool) -> None:
    rest = target
    if database and "/" in target:
        rest, db = target.split("/", 1)
        if not _DATABASE.fullmatch(db):
            raise Invalid(f"a {kind} monitor's database name after '/' is letters, digits, '_', '$', '.' or '-'")
    m = _HOST_PORT.fullmatch(rest)
    shape = "host:port[/database]" if database else "host[:port]"
    if m is None:
        raise Invalid(f"a {kind} monitor's target is {shape} (e.g. 127.0.0.1:5432), not a URL or other text")
    if m.group(2) is not None and not 1 <= int(m.group(2)) <= 65535:
        raise Invalid(f"a {kind} monitor's target port must be 1-65535")


def endpoint(kind: str, target: str) -> tuple[str, int | None] | str:
    """Where a monitor's credentials go: its target's host and port (a port left out is None);
    the target itself when it cannot be read (then any change of it counts as a move)."""
    try:
        if kind in URL_KINDS:
            u = urlsplit(target)
            return ((u.hostname or "").lower(), u.port)
        m = _HOST_PORT.fullmatch(target.split("/", 1)[0] if kind == "postgresql" else target)
    except ValueError:
        return target
    if m is None:
        return target
    return (m.group(1).lower(), int(m.group(2)) if m.group(2) else None)


def _check_target(kind: str, target: str) -> None:
    if kind in URL_KINDS:
        u = urlsplit(target)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise Invalid(f"a {kind} monitor's target is an http:// or https:// URL with a host")
        if u.username is not None or u.password is not None:
            raise Invalid("put the user and password in credentials, not in the target URL (it is not encrypted)")
        try:
            u.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise Invalid(f"a {kind} monitor's target URL has an invalid port") from None
    else:
        _check_host_port(kind, target, database=kind == "postgresql")


def _check_credentials(kind: str, fields: set[str]) -> None:
    """``fields``: the credentials' fields that are set (none: no credentials)."""
    if "passphrase" in fields and "private_key" not in fields:
        raise Invalid("credentials: a passphrase goes with a private_key")
    if kind == "linux-ssh":
        if "username" not in fields or not fields & {"password", "private_key"}:
            raise Invalid("a linux-ssh monitor needs credentials: username and password or private_key")
    elif kind == "postgresql":
        if "username" not in fields:
            raise Invalid("a postgresql monitor needs credentials with at least a username (a role that can read)")
        if "private_key" in fields:
            raise Invalid("a postgresql monitor takes a username and a password, not a private_key")
    elif fields:
        if "private_key" in fields:
            raise Invalid(f"a {kind} monitor takes a username and a password (HTTP basic auth), not a private_key")
        if fields != {"username", "password"}:
            raise Invalid(f"a {kind} monitor's credentials are a username and a password together")


def _check_thresholds(thresholds: list[Threshold], metrics: list[str]) -> None:
    seen: set[tuple[str, str]] = set()
    kept = {m.split("{", 1)[0] for m in metrics}
    for i, th in enumerate(thresholds):
        where = f"thresholds[{i}] ({th.metric})"
        if th.above is None and th.below is None:
            raise Invalid(f"{where}: give above, below or both (a range)")
        if th.above is not None and th.below is not None and th.above < th.below:
            raise Invalid(f"{where}: above ({th.above:g}) is less than below ({th.below:g}): nothing is in bounds")
        if (th.metric, th.severity) in seen:
            raise Invalid(f"{where}: a second {th.severity} threshold on the same metric")
        seen.add((th.metric, th.severity))
        if metrics and th.metric.split("{", 1)[0] not in kept:
            raise Invalid(f"{where}: the metric is not among the metrics kept")


def check(s: ServerState, spec: dict[str, Any], kind: str, agent_id: str, cred_fields: set[str]) -> None:
    if agent_id not in s.agents:
        raise Invalid(f"no agent with id {agent_id!r}: a monitor runs on an agent registered here")
    _check_target(kind, spec["target"])
    timeout = spec.get("timeout")
    if timeout is not None and timeout > spec["interval"]:
        raise Invalid(f"timeout ({timeout:g} s) is longer than interval ({spec['interval']:g} s)")
    if spec.get("match") is not None:
        if kind != "http":
            raise Invalid("match (a regular expression the body must match) is for http monitors only")
        try:
            re.compile(spec["match"])
        except re.error as exc:
            raise Invalid(f"match is not a valid regular expression: {exc}") from None
    if spec.get("insecure") and kind not in URL_KINDS:
        raise Invalid(f"insecure (skip the certificate check) is for monitors of a URL, not {kind}")
    _check_credentials(kind, cred_fields)
    _check_thresholds([Threshold.model_validate(t) for t in spec["thresholds"]], spec["metrics"])


def check_place(s: ServerState, name: str, agent_id: str, monitor_id: str | None) -> None:
    other = s.monitors.by_name(name)
    if other is not None and other.id != monitor_id:
        raise Conflict(f"a monitor called {name!r} exists already ({other.id})")
    count = sum(1 for m in s.monitors.of_agent(agent_id) if m.id != monitor_id)
    if count >= MAX_MONITORS_PER_AGENT:
        raise Conflict(f"agent {agent_id} runs {count} monitors, the most one agent may run")
