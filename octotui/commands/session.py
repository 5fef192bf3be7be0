"""Which server a subcommand talks to, resolved as the dashboard resolves it (flags > ``OCTOTUI_*`` >
the config file's ``[dashboard]`` table), and the exit codes every subcommand shares.

- ``--server URL --token T``: that server.
- No server named (embedded mode): the server of the data dir when one runs there (a dashboard
  open in embedded mode writes ``DATA_DIR/server.url``), else an embedded server and agent started
  for this command alone and stopped when it ends (about a second more; see README "Scripting").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from octotui.config import (
    DASHBOARD_OPTIONS,
    DASHBOARD_SECTION,
    ConfigError,
    connection_problem,
    resolve,
    user_data_dir,
)

if TYPE_CHECKING:
    from octotui.embedded import Embedded

EXIT_OK = 0
#: A judgement failed: ``octotui compare`` found a regression, ``octotui run --criteria`` failed one.
EXIT_CRITERIA = 1
EXIT_USAGE = 2  # bad usage, bad input, an unreachable server, a refused request
EXIT_TEST_FAILED = 3  # the test ran but failed: no samples, every container lost or failed
EXIT_LOST = 4  # run: the test was launched, then the server was lost: its outcome is unknown
EXIT_INTERRUPTED = 130  # Ctrl-C


class Usage(Exception):
    """Bad usage or input, or a server that cannot be used: the message goes to stderr, exit 2."""


def refusal(message: str, status: int | None) -> str:
    """What a command prints when the server refused a request (``detail`` and HTTP status)."""
    if status == 401:
        return f"the server refused the token: {message} (HTTP 401)"
    if status == 403:
        return f"this token may not do that: {message} (HTTP 403)"
    if status is None:
        return message
    return f"the server refused: {message} (HTTP {status})"


@dataclass
class Target:
    """The server a command talks to, and the embedded children started for it (if any)."""

    url: str
    token: str | None
    verify: str | bool = True
    started: Embedded | None = None  # started for this command: stopped when it ends

    @property
    def owned(self) -> bool:
        """True when the server lives only as long as this command (embedded, started by it)."""
        return self.started is not None


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The dashboard's settings for this invocation; :class:`Usage` when they cannot be used."""
    try:
        values = resolve(args, DASHBOARD_OPTIONS, DASHBOARD_SECTION)
    except ConfigError as exc:
        raise Usage(str(exc)) from None
    problem = connection_problem(values["server"], values["token"], values["ca_bundle"])
    if problem:
        raise Usage(problem)
    return values


def _running_embedded(data_dir: Path, token: str | None) -> tuple[str, str] | None:
    """``(url, token)`` of a server already running on ``data_dir`` (a dashboard's), or None."""
    try:
        url = (data_dir / "server.url").read_text().strip()
        token = token or (data_dir / "admin.token").read_text().strip()
    except OSError:
        return None
    if not url or not token:
        return None
    try:
        if httpx.get(f"{url}/api/v1/health", timeout=1.0, trust_env=False).status_code != 200:
            return None
    except httpx.HTTPError:
        return None
    return url, token


@contextmanager
def target(values: dict[str, Any], *, keeps_running: bool = False) -> Iterator[Target]:
    """The server to use, for the duration of the ``with``.

    ``keeps_running``: the command leaves something running after it returns (``launch`` without
    ``--wait``), which a server started for the command alone could not keep: refused then.
    """
    if values["server"]:
        yield Target(values["server"], values["token"], values["ca_bundle"] or True)
        return
    data_dir = Path(values["data_dir"] or user_data_dir()).expanduser()
    running = _running_embedded(data_dir, values["token"])
    if running is not None:
        yield Target(*running)
        return
    if keeps_running:
        raise Usage(
            f"no server named and none running on {data_dir}: a server started for this command alone "
            "would stop the test as soon as the command returns. Use `octotui run`, `launch --wait`, "
            "--server URL --token T, or keep the dashboard open (it runs the embedded server)"
        )
    from octotui.embedded import Embedded, EmbeddedError

    print(f"octotui: no server named: starting an embedded server and agent on {data_dir}", file=sys.stderr)
    embedded = Embedded(data_dir)
    try:
        embedded.start()
    except BaseException as exc:
        embedded.stop()
        if isinstance(exc, EmbeddedError):
            raise Usage(str(exc)) from None
        raise
    try:
        yield Target(embedded.url, values["token"] or embedded.admin_token, True, embedded)
    finally:
        embedded.stop()
