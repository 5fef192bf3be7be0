"""Settings resolution shared by every octotui command: defaults < config file < ``OCTOTUI_*`` < flags.

The config file is TOML (``$XDG_CONFIG_HOME/octotui/config.toml`` by default, or ``OCTOTUI_CONFIG``),
with one table per command (``[dashboard]``, ``[server]``, ``[agent]``) whose keys are the flag names
with dashes turned to underscores. Each command declares its options once as :class:`Option`; the
same declaration feeds argparse, the environment and the file, so the README's table cannot drift.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

APP_NAME = "octotui"


class ConfigError(Exception):
    """A setting has a value that cannot be used; the message says which and why."""


def user_data_dir() -> Path:
    """Where the embedded server keeps its state unless told otherwise."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path``, readable by its owner only (also when the file existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)


def config_file() -> Path:
    env = os.environ.get("OCTOTUI_CONFIG")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "config.toml"


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {text!r}")


@dataclass(frozen=True)
class Option:
    """One setting: a ``--flag``, an ``OCTOTUI_*`` variable and a config-file key at once."""

    name: str  # flag name without dashes, e.g. "server" or "state-dir"
    help: str
    default: Any = None
    type: Callable[[str], Any] = str
    flag: bool = False  # a boolean switch (--read-only)
    env: str | None = None  # defaults to OCTOTUI_<NAME>

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env_var(self) -> str:
        return self.env or "OCTOTUI_" + self.dest.upper()


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Declare ``options`` on ``parser``; defaults are resolved later by :func:`resolve`."""
    for opt in options:
        help_text = f"{opt.help} (env {opt.env_var}"
        help_text += f", default {opt.default})" if opt.default not in (None, False, "") else ")"
        if opt.flag:
            parser.add_argument(f"--{opt.name}", dest=opt.dest, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(f"--{opt.name}", dest=opt.dest, type=opt.type, default=None, help=help_text)


def resolve(
    namespace: argparse.Namespace,
    options: Sequence[Option],
    section: str,
    environ: dict[str, str] | None = None,
    file: Path | None = None,
) -> dict[str, Any]:
    """Merge defaults, the config file's ``[section]``, the environment and parsed flags."""
    environ = dict(os.environ) if environ is None else environ
    if file is None:
        file = config_file()
        if environ.get("OCTOTUI_CONFIG") and not file.is_file():
            raise ConfigError(f"OCTOTUI_CONFIG names {file}, which is not a file")
    from_file: dict[str, Any] = {}
    if file.is_file():
        try:
            from_file = tomllib.loads(file.read_text()).get(section, {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from exc
        if not isinstance(from_file, dict):
            raise ConfigError(f"{file}: [{section}] must be a table of settings")
        known = {opt.dest for opt in options}
        unknown = sorted(set(from_file) - known)
        if unknown:
            raise ConfigError(
                f"{file}: unknown setting {', '.join(map(repr, unknown))} in [{section}]"
                f" (known: {', '.join(sorted(known))})"
            )
    values: dict[str, Any] = {}
    for opt in options:
        value = opt.default
        if opt.dest in from_file:
            value = _from_file(file, section, opt, from_file[opt.dest])
        if opt.env_var in environ:
            raw = environ[opt.env_var]
            try:
                value = _parse_bool(raw) if opt.flag else opt.type(raw)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{opt.env_var}={raw!r}: {exc}") from exc
        cli = getattr(namespace, opt.dest, None)
        if cli is not None:
            value = cli
        values[opt.dest] = value
    return values


def _from_file(file: Path, section: str, opt: Option, value: Any) -> Any:
    """A config-file value checked as its flag would be."""
    where = f"{file}: [{section}] {opt.dest}"
    if opt.flag:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where}: expected a string or a number, got {value!r}")
    try:
        return opt.type(str(value))
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {text}")
    return value


#: The dashboard's settings (``[dashboard]``, ``OCTOTUI_*``, flags). The scripting subcommands
#: (``octotui agents``, ``octotui run`` …) read the same table and variables, so a config file made
#: for the dashboard drives them too; they take the connection flags among these (CONNECTION).
DASHBOARD_OPTIONS: list[Option] = [
    Option(
        "server",
        "URL of the control server, or several comma-separated (replicas of one server: the next is used "
        "when one does not answer or answers 502/503/504, the first again once healthy); absent: embedded "
        "mode, own server and local agent",
    ),
    Option("token", "operator token (embedded mode: the admin token of the data dir)"),
    Option("read-only", "monitoring mode: hide every action that changes something", default=False, flag=True),
    Option("data-dir", "state of the embedded server and agent", type=Path),
    Option("ca-bundle", "CA bundle (PEM) to verify the server's certificate"),
    Option("refresh", "seconds between refreshes", default=1.0, type=positive_float),
]
DASHBOARD_SECTION = "dashboard"
CONNECTION = ("server", "token", "data-dir", "ca-bundle")
#: At most this many URLs in ``--server`` (replicas of one server, not a directory of servers).
MAX_SERVERS = 16


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        return None


def connection_problem(server: str | None, token: str | None, ca_bundle: str | None) -> str | None:
    """What is wrong with resolved connection settings (one sentence), or None."""
    if server:
        urls = [url.strip() for url in server.split(",")]
        if len(urls) > MAX_SERVERS:
            return f"--server: at most {MAX_SERVERS} URLs, got {len(urls)}"
        if len(urls) > 1 and "" in urls:
            return f"--server: an empty URL in the list: {server!r}"
        for url in urls:
            if not url.startswith(("http://", "https://")) or not _hostname(url):
                return f"--server: not an http(s) URL: {url!r}" + (f" (in {server!r})" if len(urls) > 1 else "")
        if len({url.rstrip("/") for url in urls}) != len(urls):
            return f"--server: a URL given twice: {server!r}"
        if not token:
            return "--server needs --token (or OCTOTUI_TOKEN): an admin or read-only token of that server"
    if ca_bundle and not Path(ca_bundle).is_file():
        return f"--ca-bundle: no such file: {ca_bundle}"
    return None
