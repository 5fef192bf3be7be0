"""Embedded mode: a control server and an agent for this machine, as child processes.

The server runs in its own process, not a thread, so the dashboard's pauses never delay
heartbeats and heartbeats never delay the dashboard (DESIGN.md, measured facts). Both children
are stopped by pid when the dashboard quits. Nothing of the server or the agent is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from octotui.client import Client, ClientError

LOCAL_PROVIDER = "local"
#: Short health thresholds, so that the first screen is lively.
SERVER_ARGS = ("--heartbeat-interval", "1", "--late-after", "5", "--offline-after", "15")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class EmbeddedError(Exception):
    """The embedded server or agent could not be started; the message says why and where the log is."""


@dataclass(frozen=True)
class ChildExit:
    """An embedded child that exited: which one, its exit code, its log and the log's last lines."""

    name: str  # "server" or "agent"
    code: int
    log: Path
    tail: str

    def describe(self) -> str:
        """One or two lines a user reads: what exited, how, and where to look."""
        how = f"killed by signal {-self.code}" if self.code < 0 else f"exit code {self.code}"
        text = f"The embedded {self.name} exited ({how}); its log: {self.log}"
        return text + (f"\nlast line: {self.tail}" if self.tail else "")


def log_tail(path: Path, lines: int = 1) -> str:
    """The last ``lines`` non-empty lines of a log ("" when there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])


def local_agent_name() -> str:
    """This machine's host name, made acceptable as an agent name."""
    name = re.sub(r"[^A-Za-z0-9._ -]", "-", socket.gethostname().split(".")[0])[:64].lstrip("._ -")
    return name or "local"


def _die_with_parent() -> None:
    # Linux only: a child gets SIGTERM if the dashboard dies without cleaning up (kill -9).
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Embedded:
    """Starts the server, makes sure the ``local`` provider exists, starts the agent.

    Use as a context manager; :attr:`url` and :attr:`admin_token` are set once started.
    """

    def __init__(self, data_dir: Path, *, agent_name: str | None = None, python: str = sys.executable) -> None:
        self.data_dir = data_dir
        self.agent_name = agent_name or local_agent_name()
        self.python = python
        self.url = ""
        self.admin_token = ""
        #: The ``local`` provider and its registration token, once started.
        self.provider_id = ""
        self.provider_token = ""
        self.server: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Embedded:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """Pids of the children that were started."""
        return [p.pid for p in (self.server, self.agent) if p is not None]

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.data_dir / log_name).open("ab") as log:
            return subprocess.Popen(
                [self.python, *args],
                env={**os.environ, **env} if env else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def start(self) -> None:
        """Start both children and wait until the agent can register; raises :class:`EmbeddedError`."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedError(f"cannot use {self.data_dir} as the data directory: {exc}") from exc
        self._start_server(0)
        self._start_agent(asyncio.run(self._local_provider_token()))

    def _start_server(self, port: int) -> None:
        url_file = self.data_dir / "server.url"
        url_file.unlink(missing_ok=True)
        self.server = self._spawn(
            ["-m", "octotui", "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(port),
             *SERVER_ARGS],
            "server.log",
        )  # fmt: skip
        self.url = self._wait_for_url(url_file)
        self.admin_token = self._read_token()

    def _start_agent(self, token: str) -> None:
        self.agent = self._spawn(
            ["-m", "agent", "--server", self.url, "--location", "local", "--name",
             self.agent_name, "--state-dir", str(self.data_dir / "agent"), "--interval", "1"],
            "agent.log",
            env={"OCTOTUI_TOKEN": token},  # not in argv, where `ps` shows it to every user
        )  # fmt: skip

    def exited(self) -> list[ChildExit]:
        """The children that have exited since they were started (reaped, so none stays defunct)."""
        found = []
        for name, proc in (("server", self.server), ("agent", self.agent)):
            if proc is not None and (code := proc.poll()) is not None:
                log = self.data_dir / f"{name}.log"
                found.append(ChildExit(name, code, log, log_tail(log)))
        return found

    def restart(self) -> None:
        """Start again whichever child exited, with the same data dir; raises :class:`EmbeddedError`.

        The server gets its old port back when it is free, else another one (:attr:`url` changes,
        and the agent is started again on the new address).
        """
        old_url = self.url
        if self.server is not None and self.server.poll() is not None:
            try:
                self._start_server(urlsplit(old_url).port or 0)
            except EmbeddedError:
                self._stop((self.server,))
                self._start_server(0)  # the old port was taken meanwhile
        agent = self.agent
        if agent is not None and (agent.poll() is None) and self.url != old_url:
            self._stop((agent,))
        if agent is None or agent.poll() is not None:
            self._start_agent(self.provider_token)

    def _server_died(self) -> EmbeddedError:
        log = self.data_dir / "server.log"
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        return EmbeddedError(f"the embedded server exited; its log ({log}) ends with:\n{tail}")

    def _wait_for_url(self, url_file: Path) -> str:
        assert self.server is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise self._server_died()
            if url_file.is_file():
                url = url_file.read_text().strip()
                if url:
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                            return url
            time.sleep(0.05)
        raise EmbeddedError(
            f"the embedded server did not answer within {START_TIMEOUT_S:.0f} s (log in {self.data_dir})"
        )

    def _read_token(self) -> str:
        path = self.data_dir / "admin.token"
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise EmbeddedError(f"cannot read the admin token {path}: {exc}") from exc
        if not token:
            raise EmbeddedError(f"{path} is empty")
        return token

    async def _local_provider_token(self) -> str:
        """A fresh registration token of the ``local`` provider (made if missing).

        The server keeps registration tokens hashed, and the embedded server listens on loopback
        only, on a port that changes at every start (so the local agent registers again each
        time): a new token at every start is never stale, whoever rotated it meanwhile.
        """
        async with Client(self.url, self.admin_token) as client:
            try:
                providers = await client.providers()
                local = next((p for p in providers if p.name == LOCAL_PROVIDER), None)
                if local is None:
                    local = await client.create_provider(LOCAL_PROVIDER)
                else:
                    local = await client.rotate_provider_token(local.id)
            except ClientError as exc:
                raise EmbeddedError(f"cannot set up the {LOCAL_PROVIDER!r} provider: {exc.message}") from exc
        if not local.token:
            raise EmbeddedError(f"the server gave no registration token for provider {LOCAL_PROVIDER!r}")
        self.provider_id = local.id
        self.provider_token = local.token
        return local.token

    def stop(self) -> None:
        """SIGTERM the agent then the server, by pid; SIGKILL whatever outlives the timeout."""
        self._stop((self.agent, self.server))

    @staticmethod
    def _stop(procs: tuple[subprocess.Popen[bytes] | None, ...]) -> None:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
