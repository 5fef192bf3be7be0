"""The agent's link to the control server: register, heartbeat, poll, acknowledge, as the contract's models.

Every failure is one of the errors below, decided in one place (:meth:`ServerLink._request`, with
the table :data:`STATUS_ERRORS`), as httpx decides its own exceptions at its transport boundary:

- :class:`ServerUnreachable`: no usable answer (refused, timed out, cut, 5xx); try again later.
  :class:`CertificateRefused` and :class:`ConnectionCut` say more about why.
- :class:`Refused`: the server answered and said no (4xx). :class:`AuthRefused` (401, 403): the
  token presented is not accepted; :class:`Gone` (404): what was named is not known there.
- :class:`UnexpectedAnswer`: an answer that is not what the contract says.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from agent.settings import AgentSettings
from agent.state import Identity
from octotui.protocol import (
    API_PREFIX,
    VERSION,
    Command,
    CommandAck,
    Heartbeat,
    HeartbeatResponse,
    MonitorAssignment,
    RegisterRequest,
    RegisterResponse,
)

log = logging.getLogger("octotui.agent")

_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


class LinkError(Exception):
    """Base of every failure of a call to the server."""


class ServerUnreachable(LinkError):
    """No usable answer from the server (refused, timed out, 5xx)."""


class CertificateRefused(ServerUnreachable):
    """The server's TLS certificate cannot be verified with the CA certificates the agent has."""


class ConnectionCut(ServerUnreachable):
    """A connection was made and the request sent, then closed before the whole answer came back."""


class Refused(LinkError):
    """The server answered with an error status below 500; ``detail`` is its reason."""

    def __init__(self, what: str, status: int, detail: str) -> None:
        super().__init__(f"{what} refused ({status}): {detail}")
        self.status = status
        self.detail = detail


class AuthRefused(Refused):
    """The server refused the token presented (401/403)."""


class Gone(Refused):
    """The server does not know what the request names (404): this agent, or a command."""


class UnexpectedAnswer(LinkError):
    """An answer that does not read as the contract says."""


#: Answers saying that this server (or the proxy before it) cannot serve now, where a replica may.
FAILOVER_STATUSES = frozenset({502, 503, 504})
#: Connect timeout (s) when there are replicas to go on with: a host gone without a word costs this.
FAILOVER_CONNECT = 3.0
#: While a replica other than the first is in use, the first's health is asked this often (s)…
RETURN_PROBE = 10.0
RETURN_PROBE_TIMEOUT = 3.0
#: … and it is used again after this many healthy answers in a row.
RETURN_AFTER = 2
#: Transport errors raised before any byte of the request was sent: safe to send again anywhere.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)

#: Status codes below 500 with an error of their own; any other error status is :class:`Refused`.
STATUS_ERRORS: dict[int, type[Refused]] = {401: AuthRefused, 403: AuthRefused, 404: Gone}


@dataclass(frozen=True, slots=True)
class ServerTiming:
    """The part of the server's ``/info`` the agent lives by (read leniently: other fields may come and go)."""

    heartbeat_interval: float
    offline_after: float | None


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


def _transport_error(exc: httpx.TransportError) -> ServerUnreachable:
    """The link's error for one of httpx's transport errors."""
    if isinstance(exc, httpx.TimeoutException):
        return ServerUnreachable("no answer in time")
    if isinstance(exc, httpx.ConnectError):
        failure = _cert_failure(exc)
        if failure is not None:
            why = f"certificate verify failed: {failure.verify_message}" if failure.verify_message else str(failure)
            return CertificateRefused(f"cannot verify the server's certificate: {why}; pass --ca-bundle")
    if isinstance(exc, httpx.ReadError | httpx.RemoteProtocolError):
        return ConnectionCut(str(exc) or type(exc).__name__)
    return ServerUnreachable(str(exc) or type(exc).__name__)


def _detail(response: httpx.Response) -> str:
    """The server's ``detail``, a plain text body's first line, or the status's reason (a proxy's
    HTML error page, HAProxy's 502/503, is not logged)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str):
        return detail
    text = response.text.strip()
    if not text or text.startswith("<"):
        return response.reason_phrase
    return text.splitlines()[0][:300]


def _server_verify(settings: AgentSettings) -> ssl.SSLContext | bool:
    """The TLS trust for the server's client; for plain HTTP with no proxy, one that trusts nothing.

    httpx loads its CA bundle into every client (~1 MiB) even when no TLS connection is ever made;
    a context without any CA refuses TLS outright, should one be attempted.
    """
    if all(urlsplit(url).scheme == "http" for url in settings.server_urls) and not any(
        os.environ.get(name) or os.environ.get(name.lower()) for name in _PROXY_VARIABLES
    ):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return settings.verify


def _check_status(what: str, response: httpx.Response) -> None:
    """Raise the link's error for an error status (its body read already)."""
    if response.status_code >= 500:
        raise ServerUnreachable(f"server error {response.status_code}: {_detail(response)}")
    if response.is_error:
        error = STATUS_ERRORS.get(response.status_code, Refused)
        raise error(what, response.status_code, _detail(response))


def _lenient_answer(content: bytes) -> HeartbeatResponse:
    """A heartbeat answer whose monitor assignments did not all validate (e.g. a newer server's
    kind): the rest of it, and the assignments this agent can run. The skipped ones are logged by
    id and field, never with their values (they carry credentials)."""
    try:
        raw = json.loads(content)
        assignments = raw.pop("monitors", None) if isinstance(raw, dict) else None
        answer = HeartbeatResponse.model_validate(raw)
    except (ValueError, ValidationError):
        return HeartbeatResponse()
    if not isinstance(assignments, list):
        return answer
    runnable = []
    for item in assignments:
        try:
            runnable.append(MonitorAssignment.model_validate(item))
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False))
            ident = item.get("id") if isinstance(item, dict) else None
            log.warning("monitor assignment %s skipped: this agent cannot run it (%s)", str(ident)[:128], fields)
    answer.monitors = runnable
    return answer


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


#: Bytes read from an upload's file per chunk sent.
UPLOAD_CHUNK = 256 * 1024
#: Bytes of a download held before they are written to its file (memory stays about this).
DOWNLOAD_BUFFER = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a download wrote: its size and the SHA-256 (hex) of its bytes."""

    size: int
    sha256: str


def api_path(path: str) -> str:
    """``path`` when it is a path under the server's API; ValueError for anything that could lead
    elsewhere (a URL, ``//host``): the agent's token goes to its own server only."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(c in path for c in "\r\n\t "):
        raise ValueError(f"not a path under the server's API: {path[:200]!r}")
    if ".." in path.split("?", 1)[0].split("/"):
        raise ValueError(f"not a path under the server's API: {path[:200]!r}")
    return path


async def _file_chunks(path: Path, size: int) -> AsyncIterator[bytes]:
    """``path``'s first ``size`` bytes in chunks, each read in a thread: never the whole file in memory."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(UPLOAD_CHUNK, left))
            if not chunk:
                raise OSError(f"{path} ended {left} bytes early")
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


class ServerLink:
    """One HTTP client to the control server (``HTTPS_PROXY``/``NO_PROXY`` honoured); close it with :meth:`aclose`.

    Several server URLs are replicas of one server (one database, one identity for this agent). A
    call goes to the one in use; when it does not answer (refused, timed out, cut) or answers 502,
    503 or 504, the call is made again at once with the next URL, which is kept for later calls:
    the agent's heartbeats and long polls keep their pace through a replica's death. While another
    than the first is in use, the first is asked for its health every :data:`RETURN_PROBE` s and
    used again after :data:`RETURN_AFTER` healthy answers in a row: the first URL is the one the
    operator chose for this agent (nearest, or how agents are spread over replicas), and coming
    back spreads them again after an outage instead of leaving them all on the survivor.
    """

    def __init__(self, settings: AgentSettings) -> None:
        self.servers = settings.server_urls
        self._current = 0
        self._return: asyncio.Task[None] | None = None
        several = len(self.servers) > 1
        self._http = httpx.AsyncClient(
            # with replicas to go on with, a dead host costs a short connect timeout, not a heartbeat
            timeout=httpx.Timeout(15.0, connect=FAILOVER_CONNECT if several else 10.0),
            verify=_server_verify(settings),
            trust_env=True,  # HTTPS_PROXY / NO_PROXY
            headers={"User-Agent": f"octotui-agent/{VERSION}"},
        )

    @property
    def server(self) -> str:
        """The URL in use now."""
        return self.servers[self._current]

    async def aclose(self) -> None:
        if self._return is not None:
            self._return.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._return
            self._return = None
        await self._http.aclose()

    def _url(self, index: int, path: str) -> str:
        return self.servers[index] + API_PREFIX + path

    def _give_up_on(self, index: int, why: LinkError) -> None:
        """The server at ``index`` did not serve a call: go on with the next (unless a call made
        meanwhile moved on already)."""
        if index != self._current or len(self.servers) == 1:
            return
        self._current = (index + 1) % len(self.servers)
        log.warning("server %s failed (%s): going on with %s", self.servers[index], why, self.server)
        if self._current != 0 and (self._return is None or self._return.done()):
            self._return = asyncio.get_running_loop().create_task(self._come_back())

    async def _come_back(self) -> None:
        """Use the first URL again once it has answered its health check :data:`RETURN_AFTER` times in a row."""
        healthy = 0
        while self._current != 0:
            await asyncio.sleep(RETURN_PROBE)
            try:
                answer = await self._http.get(self._url(0, "/health"), timeout=RETURN_PROBE_TIMEOUT)
                healthy = healthy + 1 if answer.status_code == 200 else 0
            except httpx.HTTPError:
                healthy = 0
            if healthy >= RETURN_AFTER and self._current != 0:
                log.info("server %s is healthy again: back to it from %s", self.servers[0], self.server)
                self._current = 0

    async def _request(self, what: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to one request, or the link's error for what went wrong (the one mapping).

        With several servers, a failure that another replica may not have is tried there at once
        (each URL once per call); a streamed body, which cannot be sent twice, only after a failure
        to connect (nothing was sent)."""
        replayable = not isinstance(kwargs.get("content"), AsyncIterator)
        last: LinkError = ServerUnreachable("no server to call")
        for _ in range(len(self.servers)):
            index = self._current
            try:
                response = await self._http.request(method, self._url(index, path), **kwargs)
            except httpx.TransportError as exc:
                error = _transport_error(exc)
                if (replayable or isinstance(exc, _NOT_SENT)) and len(self.servers) > 1:
                    self._give_up_on(index, error)
                    last = error
                    continue
                raise error from exc
            if response.status_code in FAILOVER_STATUSES and replayable and len(self.servers) > 1:
                last = ServerUnreachable(f"server error {response.status_code}: {_detail(response)}")
                self._give_up_on(index, last)
                continue
            _check_status(what, response)
            return response
        raise last

    async def register(self, provider_token: str, body: RegisterRequest) -> RegisterResponse:
        """Present the provider token once; this agent's id and token."""
        response = await self._request(
            "registration", "POST", "/agents/register", json=body.model_dump(mode="json"),
            headers=_bearer(provider_token),
        )  # fmt: skip
        try:
            return RegisterResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise UnexpectedAnswer(f"unexpected registration answer from {self.server}: {exc}") from exc

    async def info(self, agent: Identity) -> ServerTiming:
        """The server's heartbeat interval and offline threshold (they may change after registration)."""
        response = await self._request("info", "GET", "/info", headers=_bearer(agent.agent_token))
        try:
            info = response.json()
            offline_after = info.get("offline_after")
            return ServerTiming(
                float(info["heartbeat_interval"]), None if offline_after is None else float(offline_after)
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UnexpectedAnswer(f"unreadable server info: {exc}") from exc

    async def heartbeat(self, agent: Identity, beat: Heartbeat) -> HeartbeatResponse:
        """Send one heartbeat; the server's answer (an empty one when it cannot be read)."""
        response = await self._request(
            "heartbeat", "POST", f"/agents/{agent.agent_id}/heartbeat", content=beat.model_dump_json(),
            headers={**_bearer(agent.agent_token), "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            return HeartbeatResponse.model_validate_json(response.content)
        except ValidationError:
            return _lenient_answer(response.content)

    async def poll(self, agent: Identity, wait: float, fresh: bool) -> list[Command]:
        """Wait up to ``wait`` s for commands (``fresh``: all not acknowledged yet); malformed ones are skipped."""
        response = await self._request(
            "poll", "GET", f"/agents/{agent.agent_id}/commands",
            params={"timeout": f"{wait:.1f}", "fresh": "true" if fresh else "false"},
            headers=_bearer(agent.agent_token),
            # the server holds the request up to its own cap (30 s): read longer than that
            timeout=httpx.Timeout(15.0, connect=10.0, read=max(wait, 30.0) + 15.0),
        )  # fmt: skip
        try:
            items = response.json() if response.content else []
        except ValueError as exc:
            raise UnexpectedAnswer(str(exc)) from exc
        commands = []
        for item in items if isinstance(items, list) else []:
            try:
                commands.append(Command.model_validate(item))
            except ValidationError as exc:
                log.warning("ignoring malformed command: %s", exc)
        return commands

    async def ack(self, agent: Identity, command_id: str, ack: CommandAck) -> None:
        """Acknowledge one command with its outcome."""
        await self._request(
            "ack", "POST", f"/agents/{agent.agent_id}/commands/{command_id}/ack", json=ack.model_dump(),
            headers=_bearer(agent.agent_token),
        )  # fmt: skip

    async def upload_jtl(self, agent: Identity, container_id: str, gzip_file: Path, size: int, sha256: str) -> None:
        """Send an ended container's JTL, gzip-compressed in ``gzip_file`` (``size`` bytes, ``sha256`` their
        hex digest), streamed from the file; returns when the server has stored it."""
        await self._request(
            "JTL upload", "PUT", f"/agents/{agent.agent_id}/containers/{container_id}/jtl",
            content=_file_chunks(gzip_file, size),
            headers={
                **_bearer(agent.agent_token),
                "Content-Type": "application/gzip",
                "Content-Length": str(size),  # a known length rather than chunked: proxies take it as is
                "X-Checksum-Sha256": sha256,
            },
            # the server may check and store the whole file before it answers (with replicas, into
            # PostgreSQL at ~50 MiB/s measured): 2 minutes, and 1 s more per 16 MiB
            timeout=httpx.Timeout(60.0, connect=10.0, read=120.0 + size / (16 * 1024 * 1024)),
        )  # fmt: skip

    async def download(
        self, agent: Identity, path: str, target: Path, limit: int, progress: Callable[[int], None] | None = None
    ) -> Fetched:
        """GET ``path`` (under ``/api/v1``) with this agent's token into ``target``, streamed: at most
        :data:`DOWNLOAD_BUFFER` bytes held, written in a thread. Reading stops past ``limit`` bytes
        (the size expected: what is more is wrong anyway). ``progress`` gets the bytes written so far.

        Cancelling it closes the connection at once; ``target`` is then left as written so far (the
        caller removes it).
        """
        request = self._http.build_request(
            "GET", self._url(self._current, api_path(path)), headers=_bearer(agent.agent_token)
        )
        digest, size = hashlib.sha256(), 0
        handle = await asyncio.to_thread(target.open, "wb")
        try:
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise _transport_error(exc) from exc
            try:
                if response.is_error:
                    await response.aread()
                    _check_status("download", response)
                pending = bytearray()
                try:
                    async for chunk in response.aiter_bytes():
                        digest.update(chunk)
                        size += len(chunk)
                        pending += chunk
                        if len(pending) >= DOWNLOAD_BUFFER or size > limit:
                            await asyncio.to_thread(handle.write, bytes(pending))
                            pending.clear()
                            if progress is not None:
                                progress(size)
                        if size > limit:
                            break
                except httpx.TransportError as exc:
                    raise _transport_error(exc) from exc
                if pending:
                    await asyncio.to_thread(handle.write, bytes(pending))
                if progress is not None:
                    progress(size)
            finally:
                await response.aclose()
        finally:
            await asyncio.to_thread(handle.close)
        return Fetched(size, digest.hexdigest())
