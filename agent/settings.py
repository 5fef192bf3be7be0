"""The agent's settings: command-line flags, each with an ``OCTOTUI_*`` environment variable.

Precedence: defaults < environment < flags. The agent keeps its own small parser (no config
file) so that it needs nothing of octotui but the wire contract.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from agent.registry_auth import RegistryAuth, RegistryAuthError, config_file
from octotui.protocol import VERSION, RegisterRequest

LOG_LEVELS = ("debug", "info", "warning", "error")
NETWORK_MODES = ("host", "bridge", "none")


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Everything the agent needs to run; built by :func:`parse_settings`."""

    #: The first server URL: the one the identity is kept for (whichever replica answers, one identity).
    server: str
    token: str | None
    location: str
    name: str
    state_dir: Path
    work_dir: Path
    interval: float
    ca_bundle: Path | None
    network_mode: str
    log_level: str
    docker_config: Path | None = None
    #: Keep an ended container's work folder (plan, JTL, log) after the server stored its JTL.
    keep_results: bool = False
    #: Every server URL given, in order (``--server A,B``): replicas of one server, tried in turn when
    #: one does not answer; empty means ``(server,)``.
    servers: tuple[str, ...] = ()

    @property
    def server_urls(self) -> tuple[str, ...]:
        """The URLs to try, first the preferred one."""
        return self.servers or (self.server,)

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx's ``verify`` takes: a context trusting the CA bundle, or True for the system store."""
        return ca_context(self.ca_bundle) if self.ca_bundle else True


def ca_context(bundle: Path) -> ssl.SSLContext:
    """A client TLS context that trusts the certificates of ``bundle`` (PEM); raises ssl.SSLError or OSError."""
    return ssl.create_default_context(cafile=str(bundle))


def _default_name() -> str:
    return socket.gethostname().split(".")[0] or "agent"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0.1 and 3600 seconds, got {text}")
    return value


#: At most this many URLs in ``--server`` (replicas of one server, not a directory of servers).
MAX_SERVERS = 16


def _server_url(text: str) -> str:
    parts = urlsplit(text.strip())
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text.strip().rstrip("/")


def _server_urls(text: str) -> tuple[str, ...]:
    """``URL[,URL…]``: the replicas of one control server, in the order to try them."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError("no URL given")
    if "" in items:
        raise argparse.ArgumentTypeError(f"an empty URL in the list: {text!r}")
    if len(items) > MAX_SERVERS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SERVERS} URLs, got {len(items)}")
    urls = tuple(_server_url(item) for item in items)
    if len(set(urls)) != len(urls):
        raise argparse.ArgumentTypeError(f"a URL given twice: {text!r}")
    return urls


def _network_mode(text: str) -> str:
    if text in NETWORK_MODES or text.startswith("container:") or (text and text.replace("-", "").isalnum()):
        return text
    raise argparse.ArgumentTypeError(f"not a docker network mode: {text!r}")


def _flag(env: Mapping[str, str], name: str) -> bool:
    """An on/off environment variable: 1, true, yes or on (any case) mean on."""
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser, with defaults taken from ``env`` (the ``OCTOTUI_*`` variables)."""
    state_default = env.get("OCTOTUI_STATE_DIR") or str(Path("~/.local/share/octotui-agent").expanduser())
    parser = argparse.ArgumentParser(
        prog="octotui-agent",
        description="Monitor this machine and run JMeter containers for an octotui control server.",
    )
    add = parser.add_argument
    add(
        "--server",
        type=_server_urls,
        default=env.get("OCTOTUI_SERVER"),
        metavar="URL[,URL...]",
        help="control server URL, the only address the agent calls; several (comma-separated) are replicas "
        "of one server: the agent goes on with the next when one does not answer or answers 502/503/504, "
        "and comes back to the first once it is healthy again, keeping one identity [OCTOTUI_SERVER]",
    )
    add(
        "--token", default=env.get("OCTOTUI_TOKEN"), help="the provider's registration token, used once [OCTOTUI_TOKEN]"
    )
    add(
        "--location",
        default=env.get("OCTOTUI_LOCATION", "default"),
        help="where this machine is, e.g. paris [OCTOTUI_LOCATION, default: default]",
    )
    add(
        "--name",
        default=env.get("OCTOTUI_NAME") or _default_name(),
        help="agent name [OCTOTUI_NAME, default: hostname]",
    )
    add(
        "--state-dir",
        default=state_default,
        help="identity and state; keep it to keep the agent's identity "
        "[OCTOTUI_STATE_DIR, default: ~/.local/share/octotui-agent]",
    )
    add(
        "--work-dir",
        default=env.get("OCTOTUI_WORK_DIR"),
        help="where plans and results go [OCTOTUI_WORK_DIR, default: STATE_DIR/work]",
    )
    add(
        "--interval",
        type=_positive,
        default=env.get("OCTOTUI_INTERVAL", "1"),
        help="host sampling period in seconds [OCTOTUI_INTERVAL, default: 1]",
    )
    add(
        "--ca-bundle",
        default=env.get("OCTOTUI_CA_BUNDLE"),
        help="CA certificates to verify an HTTPS server [OCTOTUI_CA_BUNDLE]",
    )
    add(
        "--network-mode",
        type=_network_mode,
        default=env.get("OCTOTUI_NETWORK_MODE", "host"),
        help="docker network mode of JMeter containers, unless a launch names another than host "
        "[OCTOTUI_NETWORK_MODE, default: host]",
    )
    add(
        "--docker-config",
        default=env.get("OCTOTUI_DOCKER_CONFIG"),
        metavar="PATH",
        help="docker CLI config file (or its folder) holding the logins of private registries to pull "
        "JMeter images from: auths, credHelpers, credsStore; mount one in the agent's container, which has "
        "no credential helpers [OCTOTUI_DOCKER_CONFIG, default: $DOCKER_CONFIG/config.json or "
        "~/.docker/config.json]",
    )
    add(
        "--keep-results",
        action="store_true",
        default=_flag(env, "OCTOTUI_KEEP_RESULTS"),
        help="keep each ended container's work folder (plan, JTL, JMeter log) after the server has stored "
        "its JTL; by default the agent removes it then [OCTOTUI_KEEP_RESULTS]",
    )
    add(
        "--log-level",
        choices=LOG_LEVELS,
        default=env.get("OCTOTUI_LOG_LEVEL", "info").lower(),
        help="[OCTOTUI_LOG_LEVEL, default: info]",
    )
    add("--version", action="version", version=f"octotui-agent {VERSION}")
    return parser  # fmt: skip


def parse_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> AgentSettings:
    """Parse flags over environment over defaults; a bad value exits with argparse's message (code 2)."""
    env = os.environ if env is None else env
    parser = build_parser(env)
    args = parser.parse_args(argv)
    if not args.server:
        parser.error("--server (or OCTOTUI_SERVER) is required")
    # argparse applies ``type`` to string defaults too, so environment values are checked the same way
    try:
        RegisterRequest(name=args.name, location=args.location)
    except ValidationError as exc:
        problems = "; ".join(f"--{err['loc'][0]}: {err['msg']}" for err in exc.errors())
        parser.error(problems)
    ca_bundle = Path(args.ca_bundle).expanduser() if args.ca_bundle else None
    if ca_bundle is not None:
        if not ca_bundle.is_file():
            parser.error(f"--ca-bundle: no such file: {ca_bundle}")
        try:
            ca_context(ca_bundle)
        except ssl.SSLError as exc:
            parser.error(f"--ca-bundle: {ca_bundle} holds no usable PEM certificate ({exc.reason or exc})")
        except OSError as exc:
            parser.error(f"--ca-bundle: cannot read {ca_bundle}: {exc.strerror or exc}")
    docker_config = _docker_config(parser, args.docker_config) if args.docker_config else None
    state_dir = Path(args.state_dir).expanduser().absolute()
    work_dir = Path(args.work_dir).expanduser().absolute() if args.work_dir else state_dir / "work"
    return AgentSettings(
        server=args.server[0],
        servers=args.server,
        token=args.token or None,
        location=args.location.strip(),
        name=args.name.strip(),
        state_dir=state_dir,
        work_dir=work_dir,
        interval=float(args.interval),
        ca_bundle=ca_bundle,
        network_mode=args.network_mode,
        log_level=args.log_level,
        docker_config=docker_config,
        keep_results=bool(args.keep_results),
    )


def _docker_config(parser: argparse.ArgumentParser, text: str) -> Path:
    """The config file ``--docker-config`` names, checked readable as JSON now rather than at the first pull."""
    path = config_file(Path(text).absolute())
    if not path.is_file():
        parser.error(f"--docker-config: no such file: {path}")
    try:
        RegistryAuth(path, named=True).read()
    except RegistryAuthError as exc:
        parser.error(f"--docker-config: {exc}")
    return path
