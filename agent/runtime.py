"""The agent's life: register once, then heartbeat, long-poll for commands and run them.

Three tasks share one event loop: the host sampler, the heartbeat (latest host sample plus those
taken since the previous beat, the Docker engine's state, every container), and the long poll
(commands executed concurrently, acknowledged with their outcome, never twice for one id).
Everything blocking (psutil, files) runs in threads; the Docker engine is reached asynchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import platform
import random
import re
import secrets
import ssl
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, assert_never
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from agent.containers import DockerRuntime, LaunchError
from agent.host import HostSampler
from agent.settings import AgentSettings
from octotui.protocol import (
    API_PREFIX,
    VERSION,
    Command,
    CommandAck,
    Heartbeat,
    HeartbeatResponse,
    HostSample,
    RegisterRequest,
    RegisterResponse,
)

log = logging.getLogger("octotui.agent")

BACKOFF_START = 1.0
BACKOFF_CAP = 60.0
_REMEMBERED_COMMANDS = 2000
#: Polls kept under a proxy's idle limit before one probes a longer hold.
_IDLE_PROBE_EVERY = 5


class FatalError(Exception):
    """The agent cannot go on (e.g. its provider token is refused); ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 3) -> None:
        super().__init__(message)
        self.code = code


class ServerUnreachable(Exception):
    """No usable answer from the server (refused, timed out, 5xx)."""


class CertificateRefused(ServerUnreachable):
    """The server's TLS certificate cannot be verified with the CA certificates the agent has."""


class ConnectionCut(ServerUnreachable):
    """A connection was made and the request sent, then closed before the whole answer came back."""


class AuthRefused(Exception):
    """The server refused the agent token (401/403): the agent must register again."""


def _cert_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error somewhere in ``exc``'s causes, if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def backoff_delay(attempt: int, start: float = BACKOFF_START, cap: float = BACKOFF_CAP) -> float:
    """Jittered exponential backoff: between half and all of ``start * 2**attempt``, capped near ``cap``."""
    ceiling = min(cap, start * (2 ** min(attempt, 16)))
    return random.uniform(ceiling / 2, ceiling)


_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


def _server_verify(settings: AgentSettings) -> ssl.SSLContext | bool:
    """The TLS trust for the server's client; for plain HTTP with no proxy, one that trusts nothing.

    httpx loads its CA bundle into every client (~1 MiB) even when no TLS connection is ever made;
    a context without any CA refuses TLS outright, should one be attempted.
    """
    if urlsplit(settings.server).scheme == "http" and not any(
        os.environ.get(name) or os.environ.get(name.lower()) for name in _PROXY_VARIABLES
    ):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return settings.verify


# --- identity --------------------------------------------------------------------------------


@dataclass
class Identity:
    """What registration gave this agent, kept in ``STATE_DIR/identity.json`` (mode 0600)."""

    agent_id: str
    agent_token: str
    server: str
    heartbeat_interval: float = 5.0
    poll_timeout: float = 25.0

    @classmethod
    def load(cls, path: Path) -> Identity | None:
        """The stored identity, or None when there is none (or it is unreadable, which is logged)."""
        try:
            data = json.loads(path.read_text())
            return cls(
                agent_id=str(data["agent_id"]),
                agent_token=str(data["agent_token"]),
                server=str(data["server"]),
                heartbeat_interval=float(data.get("heartbeat_interval", 5.0)),
                poll_timeout=float(data.get("poll_timeout", 25.0)),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable identity file %s: %s", path, exc)
            return None

    def save(self, path: Path) -> None:
        """Write atomically, readable by the owner only (it holds the agent's token)."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=2)
        os.chmod(tmp, 0o600)
        tmp.replace(path)


_INSTANCE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def load_instance(path: Path) -> str:
    """This state dir's instance id (made once, random, and kept in ``path``); raises OSError when it cannot be kept.

    The server tells agents apart by it: two agents of one name (the default is the host name)
    with two state dirs are two agents, and a copied state dir is the same one.
    """
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if _INSTANCE.match(stored):
        return stored
    if stored:
        log.warning("replacing the unreadable instance id in %s", path)
    instance = secrets.token_hex(16)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(instance + "\n")
    tmp.replace(path)
    return instance


def check_writable(path: Path) -> None:
    """Raise OSError (naming the path) unless ``path`` can be written as :meth:`Identity.save` writes it.

    Checked before the provider token is presented: the server replaces the agent's token when it
    registers, so an identity that cannot be saved then is a token lost.
    """
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    probe = path.with_name(path.name + ".tmp")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b" " * 4096)  # about an identity's size: a full disk says so here
        os.fsync(fd)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)


class CommandLog:
    """Outcomes of executed commands by id, persisted, so a redelivered command is only acknowledged again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._acks: OrderedDict[str, CommandAck] = OrderedDict()
        try:
            for cid, ack in json.loads(path.read_text()).items():
                self._acks[cid] = CommandAck.model_validate(ack)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable command log %s: %s", path, exc)

    def get(self, command_id: str) -> CommandAck | None:
        return self._acks.get(command_id)

    def add(self, command_id: str, ack: CommandAck) -> None:
        self._acks[command_id] = ack
        while len(self._acks) > _REMEMBERED_COMMANDS:
            self._acks.popitem(last=False)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({cid: a.model_dump() for cid, a in self._acks.items()}))
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)


# --- the agent -------------------------------------------------------------------------------


class AgentRuntime:
    """One agent: identity, host sampling, heartbeats, commands. Run it with :meth:`run`."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.identity_path = settings.state_dir / "identity.json"
        self.instance_path = settings.state_dir / "instance"
        self.instance: str | None = None
        self.identity: Identity | None = None
        self.docker: DockerRuntime | None = None
        self.sampler: HostSampler | None = None
        self.samples: deque[HostSample] = deque(maxlen=600)
        self.commands = CommandLog(settings.state_dir / "commands.json")
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reachable: bool | None = None
        self._outage_logged = False
        self._outage_since: float | None = None
        self._reconnected = asyncio.Event()
        #: Set when something the server should see at once happened (a container was launched or
        #: stopped): the heartbeat goes out now instead of at the end of its interval.
        self._beat_now = asyncio.Event()
        self._offline_after = 30.0  # the server's threshold, learnt from /info
        self._reregister = asyncio.Lock()
        self._http = httpx.AsyncClient(
            base_url=settings.server + API_PREFIX,
            timeout=httpx.Timeout(15.0, connect=10.0),
            verify=_server_verify(settings),
            trust_env=True,  # HTTPS_PROXY / NO_PROXY
            headers={"User-Agent": f"octotui-agent/{VERSION}"},
        )

    # --- connection state, logged once per change ---------------------------------------------

    def _reached(self) -> None:
        if self._reachable is False:
            log.info("reconnected to %s", self.settings.server)
            # wake the other loops out of their backoff: the server is back, no need to wait more
            self._reconnected.set()
            self._reconnected = asyncio.Event()
        self._reachable = True
        self._outage_logged = False
        self._outage_since = None

    def _unreached(self, exc: ServerUnreachable, delay: float) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        # a certificate failure says what to do itself; anything else is an outage
        message = (
            "%s: retrying in %.0f s"
            if isinstance(exc, CertificateRefused)
            else "server unreachable (%s): retrying in %.0f s"
        )
        if not self._outage_logged:
            log.warning(message, exc, delay)
            self._outage_logged = True
        else:
            log.debug(message, exc, delay)
        self._reachable = False

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if another loop reaches the server again meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reconnected.wait(), timeout=delay)

    def _beat_retry_delay(self, attempt: int) -> float:
        """How long a failed heartbeat waits before the next try.

        While the outage is younger than the server's offline threshold, the agent keeps its
        heartbeat rate (jittered), so that a short drop does not make it go offline with its
        containers; a longer outage backs off exponentially.
        """
        assert self.identity is not None
        delay = backoff_delay(attempt)
        young = self._outage_since is None or time.monotonic() - self._outage_since < self._offline_after
        if young:
            delay = min(delay, self.identity.heartbeat_interval * random.uniform(0.5, 1.0))
        return delay

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServerUnreachable("no answer in time") from exc
        except httpx.ConnectError as exc:
            failure = _cert_failure(exc)
            if failure is not None:
                why = f"certificate verify failed: {failure.verify_message}" if failure.verify_message else str(failure)
                raise CertificateRefused(f"cannot verify the server's certificate: {why}; pass --ca-bundle") from exc
            raise ServerUnreachable(str(exc) or type(exc).__name__) from exc
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            raise ConnectionCut(str(exc) or type(exc).__name__) from exc
        except httpx.TransportError as exc:
            raise ServerUnreachable(str(exc) or type(exc).__name__) from exc
        if response.status_code >= 500:
            raise ServerUnreachable(f"server error {response.status_code}")
        return response

    @staticmethod
    def _detail(response: httpx.Response) -> str:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        return detail if isinstance(detail, str) else (response.text.strip()[:300] or response.reason_phrase)

    def _auth(self) -> dict[str, str]:
        assert self.identity is not None
        return {"Authorization": f"Bearer {self.identity.agent_token}"}

    # --- registration -------------------------------------------------------------------------

    async def _register(self, previous: str | None) -> Identity:
        """Register with the provider token, retrying while the server is unreachable."""
        token = self.settings.token
        if not token:
            raise FatalError(
                f"no identity for {self.settings.server} in {self.settings.state_dir} and no --token "
                "(OCTOTUI_TOKEN) to register with",
                code=2,
            )
        assert self.sampler is not None
        body = RegisterRequest(
            name=self.settings.name,
            location=self.settings.location,
            version=VERSION,
            cpu_count=self.sampler.cpu_count,
            memory_total=self.sampler.memory_total,
            platform=f"{platform.system()} {platform.release()} {platform.machine()}",
            previous_agent_id=previous,
            instance=self.instance,
        )
        attempt = 0
        while True:
            try:
                response = await self._request(
                    "POST", "/agents/register", json=body.model_dump(mode="json"),
                    headers={"Authorization": f"Bearer {token}"},
                )  # fmt: skip
            except ServerUnreachable as exc:
                delay = backoff_delay(attempt)
                attempt += 1
                self._unreached(exc, delay)
                await asyncio.sleep(delay)
                continue
            self._reached()
            if response.status_code in (401, 403):
                raise FatalError(f"the server refused the provider token: {self._detail(response)}")
            if response.is_error:
                raise FatalError(f"registration refused ({response.status_code}): {self._detail(response)}", code=2)
            try:
                answer = RegisterResponse.model_validate_json(response.content)
            except ValidationError as exc:
                raise FatalError(f"unexpected registration answer from {self.settings.server}: {exc}") from exc
            identity = Identity(
                agent_id=answer.agent_id,
                agent_token=answer.agent_token,
                server=self.settings.server,
                heartbeat_interval=answer.heartbeat_interval,
                poll_timeout=answer.poll_timeout,
            )
            try:
                await asyncio.to_thread(identity.save, self.identity_path)
            except OSError as exc:
                raise FatalError(self._unwritable(exc), code=2) from None
            if previous and previous != answer.agent_id:
                log.warning("registered again as %s (was %s)", answer.agent_id, previous)
            else:
                log.info("registered as %s (%s, location %s)", answer.agent_id, self.settings.name,
                         self.settings.location)  # fmt: skip
            return identity

    def _unwritable(self, exc: OSError) -> str:
        where = exc.filename or self.settings.state_dir
        return f"cannot write the agent's state at {where}: {exc.strerror or exc}"

    def _prepare_state(self) -> str:
        """Check the state dir can be written and read this dir's instance id; FatalError when it cannot."""
        try:
            check_writable(self.identity_path)
            return load_instance(self.instance_path)
        except OSError as exc:
            raise FatalError(self._unwritable(exc), code=2) from None

    async def _ensure_identity(self) -> Identity:
        self.instance = await asyncio.to_thread(self._prepare_state)
        stored = await asyncio.to_thread(Identity.load, self.identity_path)
        if stored is not None and stored.server == self.settings.server:
            log.info("agent %s (identity from %s)", stored.agent_id, self.identity_path)
            return stored
        if stored is not None:
            log.info("identity in %s is for %s: registering with %s", self.identity_path, stored.server,
                     self.settings.server)  # fmt: skip
        return await self._register(previous=None)

    async def _refused(self, token_used: str) -> None:
        """The agent token was refused: register again, keeping the id when the server still knows it."""
        async with self._reregister:
            assert self.identity is not None
            if self.identity.agent_token != token_used:
                return  # another task registered again meanwhile
            log.warning("the server refused this agent's token: registering again")
            previous = self.identity.agent_id
            self.identity = await self._register(previous=previous)
            if self.docker is not None:
                self.docker.set_agent_id(self.identity.agent_id)

    async def _refresh_info(self) -> None:
        """Learn the server's heartbeat interval and offline threshold (they may have changed since registration)."""
        assert self.identity is not None
        with contextlib.suppress(ServerUnreachable, ValueError, KeyError, TypeError):
            response = await self._request("GET", "/info", headers=self._auth())
            if response.status_code == 200:
                info = response.json()
                self.identity.heartbeat_interval = float(info["heartbeat_interval"])
                self._offline_after = float(info.get("offline_after", self._offline_after))

    # --- loops --------------------------------------------------------------------------------

    async def _sample_loop(self) -> None:
        assert self.sampler is not None
        interval = self.settings.interval
        next_at = time.monotonic()
        while True:
            try:
                self.samples.append(await asyncio.to_thread(self.sampler.sample))
            except Exception as exc:
                log.warning("host sampling failed: %s", exc)
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # fell behind (suspended machine): do not burst to catch up
                next_at = now + interval
            await asyncio.sleep(next_at - now)

    async def _check_engine(self) -> None:
        assert self.docker is not None
        info, changed = await self.docker.check_engine()
        if not changed:
            return
        if info.available:
            log.info("docker engine available (version %s)", info.version)
            try:
                found = await self.docker.adopt()
            except Exception as exc:
                log.warning("cannot list this agent's containers: %s", exc)
            else:
                if found:
                    log.info("following %d container(s) found again: %s", len(found), ", ".join(found))
        else:
            log.warning("docker engine unavailable: %s (monitoring goes on)", info.error)

    def _requeue(self, taken: list[HostSample]) -> None:
        """Keep unsent readings for the next beat (the newest win when the window is full)."""
        self.samples = deque([*taken, *self.samples], maxlen=self.samples.maxlen)

    async def _heartbeat_loop(self) -> None:
        assert self.identity is not None and self.docker is not None and self.sampler is not None
        attempt = 0
        while True:
            await self._check_engine()
            reports = await self.docker.reports()
            taken = list(self.samples)
            self.samples.clear()
            if not taken:
                taken = [await asyncio.to_thread(self.sampler.sample)]
            info = self.docker.info
            # without an engine the agent cannot list its containers: the list is then not the whole truth
            beat = Heartbeat(
                host=taken[-1], samples=taken[:-1], docker=info, containers=reports, complete=info.available
            )
            token = self.identity.agent_token
            try:
                response = await self._request(
                    "POST", f"/agents/{self.identity.agent_id}/heartbeat",
                    content=beat.model_dump_json(), headers={**self._auth(), "Content-Type": "application/json"},
                )  # fmt: skip
                if response.status_code in (401, 403, 404):
                    raise AuthRefused(self._detail(response))
                if response.is_error:
                    raise ServerUnreachable(f"heartbeat refused ({response.status_code}): {self._detail(response)}")
            except ServerUnreachable as exc:
                self._requeue(taken)
                self._unreached(exc, delay := self._beat_retry_delay(attempt))
                attempt += 1
                await self._pause(delay)
                continue
            except AuthRefused:
                self._requeue(taken)
                await self._refused(token)
                continue
            self._reached()
            attempt = 0
            await asyncio.to_thread(self.docker.delivered, [r.container_id for r in reports])
            with contextlib.suppress(ValidationError):
                answer = HeartbeatResponse.model_validate_json(response.content)
                for container_id in answer.stop:
                    log.info("the server asks to stop container %s", container_id)
                    await self.docker.stop(container_id, 20.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), timeout=self.identity.heartbeat_interval)
            self._beat_now.clear()

    async def _poll_loop(self) -> None:
        assert self.identity is not None
        attempt = 0
        # A "fresh" poll gets every command not yet acknowledged, even one handed out moments ago:
        # the first poll after a start, and the first after a failed poll (whose answer, maybe
        # carrying commands, was lost on the way; a command delivered twice still runs once, by id).
        fresh = True
        # A proxy on the way may close idle connections: a poll it cuts while held open says so, and
        # later polls then stay under that idle limit instead of escalating a backoff meant for outages.
        # Every few polls one is held a little longer, to notice a limit that grew or went away.
        idle_cap: float | None = None
        under_cap = 0
        while True:
            wait = self.identity.poll_timeout * random.uniform(0.7, 1.0)
            if idle_cap is not None:
                if under_cap >= _IDLE_PROBE_EVERY:
                    idle_cap, under_cap = idle_cap * 2, 0
                    if idle_cap >= self.identity.poll_timeout:
                        idle_cap = None
                if idle_cap is not None:
                    wait = min(wait, idle_cap)
            token = self.identity.agent_token
            opened = time.monotonic()
            try:
                response = await self._request(
                    "GET", f"/agents/{self.identity.agent_id}/commands",
                    params={"timeout": f"{wait:.1f}", "fresh": "true" if fresh else "false"},
                    headers=self._auth(),
                    # the server holds the request up to its own cap (30 s): read longer than that
                    timeout=httpx.Timeout(15.0, connect=10.0, read=max(wait, 30.0) + 15.0),
                )  # fmt: skip
                if response.status_code in (401, 403, 404):
                    raise AuthRefused(self._detail(response))
                if response.is_error:
                    raise ServerUnreachable(f"poll refused ({response.status_code}): {self._detail(response)}")
                items = response.json() if response.content else []
            except ServerUnreachable as exc:
                fresh = True
                held = time.monotonic() - opened
                if isinstance(exc, ConnectionCut) and self._reachable and 1.0 <= held < wait - 0.5:
                    # cut while held open, the server otherwise answering: an idle timeout on the way
                    noticed = idle_cap is None
                    idle_cap, under_cap = max(0.5, held * 0.7), 0
                    log.log(logging.INFO if noticed else logging.DEBUG,
                            "long poll cut after %.1f s (%s): polling again, at most %.1f s each", held, exc,
                            idle_cap)  # fmt: skip
                    await asyncio.sleep(random.uniform(0.05, 0.3))
                    continue
                delay = backoff_delay(attempt)
                attempt += 1
                self._unreached(exc, delay)
                await self._pause(delay)
                continue
            except AuthRefused:
                await self._refused(token)
                fresh = True
                continue
            except ValueError as exc:
                log.warning("unreadable commands from server: %s", exc)
                fresh = True
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            self._reached()
            attempt = 0
            fresh = False
            if idle_cap is not None:
                under_cap += 1
            for item in items if isinstance(items, list) else []:
                try:
                    command = Command.model_validate(item)
                except ValidationError as exc:
                    log.warning("ignoring malformed command: %s", exc)
                    continue
                self._spawn(self._execute(command))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- commands -----------------------------------------------------------------------------

    async def _execute(self, command: Command) -> None:
        """Run one command once, however often it is delivered, and acknowledge its outcome."""
        done = self.commands.get(command.id)
        if done is not None:
            await self._ack(command.id, done)
            return
        if command.id in self._inflight:
            return
        self._inflight.add(command.id)
        assert self.docker is not None
        try:
            match command.kind:
                case "launch":
                    log.info("launch of container %s (test %s)", command.container_id, command.test_id)
                    try:
                        await self.docker.launch(command)
                        ack = CommandAck(ok=True)
                    except LaunchError as exc:
                        ack = CommandAck(ok=False, error=str(exc))
                case "stop":
                    log.info("stop of container %s (test %s)", command.container_id, command.test_id)
                    outcome = await self.docker.stop(command.container_id, command.grace_s)
                    log.debug("stop of %s: %s", command.container_id, outcome)
                    ack = CommandAck(ok=True)
                case _:
                    assert_never(command.kind)
            await asyncio.to_thread(self.commands.add, command.id, ack)
        except Exception as exc:
            log.exception("command %s (%s) failed", command.id, command.kind)
            ack = CommandAck(ok=False, error=f"agent error: {exc}")
        finally:
            self._inflight.discard(command.id)
        await self._ack(command.id, ack)
        self._beat_now.set()  # the container's new state reaches the server now, not in up to 5 s

    async def _ack(self, command_id: str, ack: CommandAck) -> None:
        assert self.identity is not None
        for attempt in range(5):
            try:
                response = await self._request(
                    "POST", f"/agents/{self.identity.agent_id}/commands/{command_id}/ack",
                    json=ack.model_dump(), headers=self._auth(),
                )  # fmt: skip
            except ServerUnreachable:
                await self._pause(backoff_delay(attempt))
                continue
            if response.status_code == 404:
                log.debug("ack of %s: %s", command_id, self._detail(response))
            elif response.is_error:
                log.warning("ack of %s refused: %s", command_id, self._detail(response))
            return
        log.info("could not acknowledge command %s yet: the server will hand it out again", command_id)

    # --- run ----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set; the exit status (0 for a requested stop)."""
        settings = self.settings
        try:
            settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            settings.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("cannot create the state directory: %s", exc)
            return 2
        self.sampler = await asyncio.to_thread(HostSampler, settings.state_dir)
        sampling = asyncio.create_task(self._sample_loop())
        stopping: asyncio.Task[Any] = asyncio.create_task(stop.wait())
        try:
            registering = asyncio.create_task(self._ensure_identity())
            await asyncio.wait({registering, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not registering.done():
                registering.cancel()
                return 0
            try:
                self.identity = registering.result()
            except FatalError as exc:
                log.error("%s", exc)
                return exc.code
            await self._refresh_info()
            self.docker = DockerRuntime(
                settings.work_dir,
                self.identity.agent_id,
                settings.state_dir / "containers.json",
                settings.network_mode,
                instance=self.instance,
            )
            loops: set[asyncio.Task[Any]] = {
                asyncio.create_task(self._heartbeat_loop()),
                asyncio.create_task(self._poll_loop()),
            }
            done, _ = await asyncio.wait({*loops, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in loops:
                task.cancel()
            for task in loops & done:
                failure = task.exception()
                if isinstance(failure, FatalError):
                    log.error("%s", failure)
                    return failure.code
                if failure is not None:
                    log.error("agent loop failed: %r", failure)
                    return 1
            return 0
        finally:
            for task in (sampling, stopping, *self._tasks):
                task.cancel()
            if self.docker is not None:
                await self.docker.aclose()
            with contextlib.suppress(Exception):
                await self._http.aclose()
