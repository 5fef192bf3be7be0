"""The dashboard's only way to the control server: one long-lived ``httpx.AsyncClient``, typed methods.

Every failure surfaces as :class:`ClientError` (the server answered with an error, whose ``detail``
is kept) or its subclass :class:`ServerUnreachable` (no answer at all), so callers never handle
httpx's exception tree themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from octotui.httpcommon import FAILOVER_STATUSES, server_urls, tls_verify, unreachable
from octotui.httpcommon import detail as _detail
from octotui.protocol import (
    API_PREFIX,
    TERMINAL_TEST_STATES,
    Agent,
    AgentMetrics,
    Alarm,
    AuditEntry,
    Changes,
    Comparison,
    ContainerRecord,
    ErrorFigures,
    FileInfo,
    Health,
    LabelFigures,
    Monitor,
    MonitorCreate,
    MonitorMetrics,
    MonitorUpdate,
    Placement,
    Provider,
    ServerInfo,
    Test,
    TestCreate,
    TestSeries,
    TokenCreated,
    TokenInfo,
)
from octotui.protocol.monitors import TestMonitors

M = TypeVar("M", bound=BaseModel)


class ClientError(Exception):
    """The server refused a request, or gave an answer that does not fit the contract."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ServerUnreachable(ClientError):
    """No answer from the server: refused, timed out, TLS failure, DNS failure."""


#: While a replica other than the first is in use, the first's health is asked this often (s)…
RETURN_PROBE = 10.0
#: … and it is used again after this many healthy answers in a row.
RETURN_AFTER = 2
#: Transport errors raised before any byte of the request was sent: safe to send again anywhere.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class Client:
    """Typed access to one control server.

    ``base_url`` may name several replicas of one server (``"URL,URL"`` or a sequence): a request
    goes to the one in use (:attr:`base_url`); when it does not answer or answers 502, 503 or 504,
    the request is made again at once with the next, which is kept. While another than the first is
    in use, the first is asked for its health every :data:`RETURN_PROBE` s and used again after
    :data:`RETURN_AFTER` healthy answers in a row (the first is the operator's choice; coming back
    spreads clients again after an outage). ``on_switch`` is called with the new URL at each change.

    ``transport`` lets tests hand in ``httpx.ASGITransport(app)`` to talk to the real server app
    without a socket; ``verify`` takes a CA bundle path or ``False``.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        token: str | None = None,
        *,
        timeout: float = 10.0,
        verify: str | bool | ssl.SSLContext = True,
        transport: httpx.AsyncBaseTransport | None = None,
        on_switch: Callable[[str], object] | None = None,
    ) -> None:
        self.servers = server_urls(base_url)
        self._current = 0
        self._return: asyncio.Task[None] | None = None
        self.on_switch = on_switch
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url + API_PREFIX,
            headers=headers,
            timeout=timeout,
            verify=tls_verify(verify, self.servers),
            transport=transport,
            trust_env=True,  # honour HTTPS_PROXY / NO_PROXY like the agent does
        )

    @property
    def base_url(self) -> str:
        """The server URL in use now (the first of several until it fails)."""
        return self.servers[self._current]

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._return is not None:
            self._return.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._return
            self._return = None
        await self._http.aclose()

    def _use(self, index: int) -> None:
        self._current = index
        self._http.base_url = httpx.URL(self.base_url + API_PREFIX)
        if self.on_switch is not None:
            self.on_switch(self.base_url)

    def _give_up_on(self, index: int) -> None:
        """The server at ``index`` did not serve a request: go on with the next (unless a request
        made meanwhile moved on already)."""
        if index != self._current or len(self.servers) == 1:
            return
        self._use((index + 1) % len(self.servers))
        if self._current != 0 and (self._return is None or self._return.done()):
            self._return = asyncio.get_running_loop().create_task(self._come_back())

    async def _come_back(self) -> None:
        """Use the first URL again once it has answered its health check :data:`RETURN_AFTER` times in a row."""
        healthy = 0
        while self._current != 0:
            await asyncio.sleep(RETURN_PROBE)
            try:
                answer = await self._http.get(self.servers[0] + API_PREFIX + "/health", timeout=3.0)
                healthy = healthy + 1 if answer.status_code == 200 else 0
            except httpx.HTTPError:
                healthy = 0
            if healthy >= RETURN_AFTER and self._current != 0:
                self._use(0)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer, or ClientError; with several servers, a failure another replica may not have
        is tried there at once (each once; a streamed body only after a failure to connect)."""
        several = len(self.servers) > 1
        replayable = not isinstance(kwargs.get("content"), AsyncIterator)
        failures: list[str] = []
        error: ClientError = ServerUnreachable("no server to ask")
        for _ in range(len(self.servers)):
            index = self._current
            url = self.base_url
            try:
                response = await self._http.request(method, url + API_PREFIX + path, **kwargs)
            except httpx.TransportError as exc:
                error = ServerUnreachable(unreachable(url, exc))
                if several and (replayable or isinstance(exc, _NOT_SENT)):
                    failures.append(error.message)
                    self._give_up_on(index)
                    continue
                raise error from exc
            if response.status_code in FAILOVER_STATUSES and several and replayable:
                detail = _detail(response)
                error = ClientError(detail, response.status_code)
                failures.append(f"{url}: {response.status_code} {detail}")
                self._give_up_on(index)
                continue
            if response.is_error:
                raise ClientError(_detail(response), response.status_code)
            return response
        if len(failures) > 1:  # say what each replica answered
            raise type(error)("; ".join(failures), error.status)
        raise error

    async def _get(self, path: str, model: type[M], **kwargs: Any) -> M:
        response = await self._request("GET", path, **kwargs)
        return self._parse(response, model)

    def _parse(self, response: httpx.Response, model: type[M]) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ClientError(f"unexpected answer from server: {exc}", response.status_code) from exc

    def _parse_list(self, response: httpx.Response, model: type[M]) -> list[M]:
        try:
            return TypeAdapter(list[model]).validate_json(response.content)  # type: ignore[valid-type]
        except ValidationError as exc:
            raise ClientError(f"unexpected answer from server: {exc}", response.status_code) from exc

    # --- server -------------------------------------------------------------------------------

    async def health(self) -> Health:
        return await self._get("/health", Health)

    async def info(self) -> ServerInfo:
        return await self._get("/info", ServerInfo)

    # --- providers ----------------------------------------------------------------------------

    async def providers(self) -> list[Provider]:
        return self._parse_list(await self._request("GET", "/providers"), Provider)

    async def create_provider(self, name: str) -> Provider:
        return self._parse(await self._request("POST", "/providers", json={"name": name}), Provider)

    async def rename_provider(self, provider_id: str, name: str) -> Provider:
        return self._parse(await self._request("PATCH", f"/providers/{provider_id}", json={"name": name}), Provider)

    async def delete_provider(self, provider_id: str) -> None:
        await self._request("DELETE", f"/providers/{provider_id}")

    async def rotate_provider_token(self, provider_id: str) -> Provider:
        return self._parse(await self._request("POST", f"/providers/{provider_id}/rotate-token"), Provider)

    # --- agents -------------------------------------------------------------------------------

    async def agents(self) -> list[Agent]:
        return self._parse_list(await self._request("GET", "/agents"), Agent)

    async def agent(self, agent_id: str) -> Agent:
        return await self._get(f"/agents/{agent_id}", Agent)

    async def agent_metrics(self, agent_id: str, seconds: float | None = None) -> AgentMetrics:
        params = {"seconds": seconds} if seconds is not None else None
        return await self._get(f"/agents/{agent_id}/metrics", AgentMetrics, params=params)

    async def delete_agent(self, agent_id: str, *, force: bool = False) -> None:
        """Remove an agent; the server refuses (409) one with live containers unless ``force``."""
        await self._request("DELETE", f"/agents/{agent_id}", params={"force": "true"} if force else None)

    # --- tests --------------------------------------------------------------------------------

    async def tests(self, ended: int | None = None) -> list[Test]:
        """Every test; with ``ended``, every live test and only the ``ended`` newest ended ones."""
        params = {"ended": ended} if ended is not None else None
        return self._parse_list(await self._request("GET", "/tests", params=params), Test)

    async def test(self, test_id: str) -> Test:
        return await self._get(f"/tests/{test_id}", Test)

    async def test_series(
        self, test_id: str, *, labels: bool = False, label: str | None = None, generators: bool = False
    ) -> TestSeries:
        """The test's whole series; with ``labels`` every label's series too, with ``label`` that
        one's, with ``generators`` each load generator's CPU and memory over the test."""
        params: dict[str, str] = {}
        if labels:
            params["labels"] = "true"
        if label is not None:
            params["label"] = label
        if generators:
            params["generators"] = "true"
        return await self._get(f"/tests/{test_id}/series", TestSeries, params=params or None)

    async def labels(self, test_id: str) -> list[LabelFigures] | None:
        """The test's figures per label (live while it runs, final after); None when the server
        answers 404: one without per-label figures (older than them), or no such test."""
        return await self._optional_list(f"/tests/{test_id}/labels", LabelFigures)

    async def errors(self, test_id: str) -> list[ErrorFigures] | None:
        """The test's failed samples per label, response code and message; None on 404 (as
        :meth:`labels`)."""
        return await self._optional_list(f"/tests/{test_id}/errors", ErrorFigures)

    async def _optional_list(self, path: str, model: type[M]) -> list[M] | None:
        try:
            response = await self._request("GET", path)
        except ServerUnreachable:
            raise
        except ClientError as exc:
            if exc.status == 404:
                return None
            raise
        return self._parse_list(response, model)

    async def create_test(self, spec: TestCreate, idempotency_key: str | None = None) -> Test:
        """Launch a test. With ``idempotency_key``, the same launch sent again (its answer was lost)
        answers with the test the first one made instead of starting a second."""
        body = spec.model_copy(update={"dry_run": False}).model_dump(mode="json", exclude_none=True)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._parse(await self._request("POST", "/tests", json=body, headers=headers), Test)

    async def plan_test(self, spec: TestCreate) -> Placement:
        """Dry run: where the server would put the containers, launching nothing."""
        body = spec.model_copy(update={"dry_run": True}).model_dump(mode="json", exclude_none=True)
        return self._parse(await self._request("POST", "/tests", json=body), Placement)

    async def plan(self, test_id: str) -> str:
        """The JMX plan ``test_id`` was launched with, as it was sent (``GET /tests/{id}/plan``)."""
        return (await self._request("GET", f"/tests/{quote(test_id, safe='')}/plan")).text

    async def delete_test(self, test_id: str) -> None:
        """Delete an ended test with its results and files; the server refuses a live one (409)."""
        await self._request("DELETE", f"/tests/{quote(test_id, safe='')}")

    async def stop_test(self, test_id: str) -> Test:
        return self._parse(await self._request("POST", f"/tests/{test_id}/stop"), Test)

    async def stop_container(self, test_id: str, container_id: str) -> Test:
        response = await self._request("POST", f"/tests/{test_id}/containers/{container_id}/stop")
        return self._parse(response, Test)

    async def export(
        self,
        test_id: str,
        name: str,
        write: Callable[[bytes], object],
        params: dict[str, str] | None = None,
    ) -> int:
        """Stream ``GET /tests/{id}/export/{name}`` (``stats.csv``, ``junit.xml``, ``report.html``,
        ``jtl``) into ``write`` chunk by chunk, in constant memory; the number of bytes written.
        ``params``: the export's query (``{"baseline": ID}`` for the report's comparison).

        Nothing is written when the server refuses (the error's detail is kept, as everywhere)."""
        path = f"/tests/{quote(test_id, safe='')}/export/{name}"
        written = 0
        index = self._current
        try:
            # A large JTL is produced as it is sent: allow the server a while between chunks.
            timeout = httpx.Timeout(self._http.timeout.connect, read=300)
            async with self._http.stream("GET", path, params=params, timeout=timeout) as r:
                if r.is_error:
                    await r.aread()
                    raise ClientError(_detail(r), r.status_code)
                async for chunk in r.aiter_bytes(256 * 1024):
                    write(chunk)  # a file's write: blocking, but this is a one-shot command's only work
                    written += len(chunk)
        except httpx.TransportError as exc:
            url = self.servers[index]
            self._give_up_on(index)  # written already: the caller decides whether to ask again
            raise ServerUnreachable(unreachable(url, exc)) from exc
        return written

    async def compare(self, test_id: str, baseline_id: str, tolerances: dict[str, float] | None = None) -> Comparison:
        """Each label of ``test_id`` against ``baseline_id`` (``GET /tests/{id}/compare/{baseline}``);
        ``tolerances`` by the route's query names (``avg_ms``, ``p95_ms``, ``error_percent``,
        ``throughput``), the server's defaults for those not given."""
        path = f"/tests/{quote(test_id, safe='')}/compare/{quote(baseline_id, safe='')}"
        return await self._get(path, Comparison, params=tolerances or None)

    # --- files --------------------------------------------------------------------------------

    async def upload_file(self, path: Path, name: str | None = None, chunk: int = 1024 * 1024) -> FileInfo:
        """Upload ``path`` as a test file (``POST /files?name=NAME``, default its base name), streamed
        from disk a chunk at a time (constant memory, reads off the event loop). Its size is declared
        so that a server whose limit it passes refuses it (413) before the body is sent."""
        handle = await asyncio.to_thread(path.open, "rb")
        size = os.fstat(handle.fileno()).st_size

        async def body() -> AsyncIterator[bytes]:
            left = size  # exactly the bytes declared, should the file grow meanwhile
            while left > 0 and (data := await asyncio.to_thread(handle.read, min(chunk, left))):
                left -= len(data)
                yield data

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        # Sending 1 GiB takes a while; the server answers once it has hashed and kept the last byte.
        timeout = httpx.Timeout(self._http.timeout.connect, read=300, write=300)
        try:
            response = await self._request(
                "POST", "/files", params={"name": name or path.name}, content=body(), headers=headers, timeout=timeout
            )
        finally:
            handle.close()
        return self._parse(response, FileInfo)

    async def delete_file(self, file_id: str) -> None:
        """Delete an uploaded file; the server refuses (409) one a test not ended brings."""
        await self._request("DELETE", f"/files/{quote(file_id, safe='')}")

    async def changes(self, since: int | None = None, epoch: str | None = None, ended: int | None = None) -> Changes:
        """What changed after revision ``since`` of ``epoch`` (absent: the whole state); ``ended``:
        the whole state keeps only that many ended tests. A server without the feed answers 404."""
        params: dict[str, str | int] = {}
        if since is not None and epoch is not None:
            params = {"since": since, "epoch": epoch}
        if ended is not None:
            params["ended"] = ended
        return self._parse(await self._request("GET", "/changes", params=params), Changes)

    # --- operator tokens and audit ------------------------------------------------------------

    async def create_token(self, name: str, role: str) -> TokenCreated:
        """A named operator token (``admin`` or ``read-only``); the secret is in this answer only."""
        response = await self._request("POST", "/tokens", json={"name": name, "role": role})
        return self._parse(response, TokenCreated)

    async def tokens(self) -> list[TokenInfo]:
        return self._parse_list(await self._request("GET", "/tokens"), TokenInfo)

    async def revoke_token(self, name: str) -> None:
        await self._request("DELETE", f"/tokens/{quote(name, safe='')}")

    async def audit(self, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        """Changes made through the API, newest first; ``before``: only ids below it (paging)."""
        params: dict[str, int] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return self._parse_list(await self._request("GET", "/audit", params=params), AuditEntry)

    # --- fleet ---------------------------------------------------------------------------------

    async def drain(self, agent_id: str) -> Agent:
        """Take an agent out of service: no new containers there, its running ones finish."""
        return self._parse(await self._request("POST", f"/agents/{quote(agent_id, safe='')}/drain"), Agent)

    async def undrain(self, agent_id: str) -> Agent:
        """Put a drained agent back in service."""
        return self._parse(await self._request("POST", f"/agents/{quote(agent_id, safe='')}/undrain"), Agent)

    # --- monitors of the servers under test ----------------------------------------------------

    async def monitors(self, agent_id: str | None = None) -> list[Monitor]:
        """Every monitor (of one agent with ``agent_id``), with its state, last values and alarms."""
        params = {"agent": agent_id} if agent_id is not None else None
        return self._parse_list(await self._request("GET", "/monitors", params=params), Monitor)

    async def monitor(self, monitor_id: str) -> Monitor:
        return await self._get(f"/monitors/{quote(monitor_id, safe='')}", Monitor)

    async def create_monitor(self, spec: MonitorCreate) -> Monitor:
        """A new monitor; its credentials are sent once and never come back (``credentials_set``)."""
        body = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return self._parse(await self._request("POST", "/monitors", json=body), Monitor)

    async def update_monitor(self, monitor_id: str, change: MonitorUpdate) -> Monitor:
        """Change the fields set in ``change`` (``credentials=None`` set explicitly removes them)."""
        body = change.model_dump(mode="json", by_alias=True, exclude_unset=True)
        path = f"/monitors/{quote(monitor_id, safe='')}"
        return self._parse(await self._request("PATCH", path, json=body), Monitor)

    async def delete_monitor(self, monitor_id: str) -> None:
        await self._request("DELETE", f"/monitors/{quote(monitor_id, safe='')}")

    async def monitor_metrics(self, monitor_id: str, seconds: float | None = None) -> MonitorMetrics:
        """A monitor's recent samples (the last ``seconds``, or all the server keeps), oldest first."""
        params = {"seconds": seconds} if seconds is not None else None
        return await self._get(f"/monitors/{quote(monitor_id, safe='')}/metrics", MonitorMetrics, params=params)

    async def alarms(
        self, monitor: str | None = None, test: str | None = None, active: bool | None = None, limit: int = 1000
    ) -> list[Alarm]:
        """Alarms, newest first: of one monitor, kept with one test, only raised (or cleared) ones."""
        params: dict[str, str | int] = {"limit": limit}
        if monitor is not None:
            params["monitor"] = monitor
        if test is not None:
            params["test"] = test
        if active is not None:
            params["active"] = "true" if active else "false"
        return self._parse_list(await self._request("GET", "/alarms", params=params), Alarm)

    async def test_monitors(self, test_id: str) -> TestMonitors:
        """The monitors a test names: each metric's points during it, and its alarms."""
        return await self._get(f"/tests/{quote(test_id, safe='')}/monitors", TestMonitors)


@dataclass
class Applied:
    """What one answer of the change feed changed in a :class:`Mirror` (ids, removed ones included).

    ``full``: the mirror was rebuilt from the whole state, so anything may have changed.
    """

    full: bool = False
    agents: set[str] = field(default_factory=set)
    providers: set[str] = field(default_factory=set)
    tests: set[str] = field(default_factory=set)


class Mirror:
    """The dashboard's copy of the server's agents, providers and tests, kept by the change feed.

    Its lists equal what ``GET /agents``, ``GET /providers`` and ``GET /tests?ended=N`` answer:
    the same records in the same order. Records that did not change stay the same objects, so
    a consumer can tell what changed by identity.
    """

    def __init__(self, ended: int | None = None) -> None:
        #: Ended tests kept (the newest by creation): as ``GET /tests?ended=``; None keeps all.
        self.ended = ended
        self.epoch: str | None = None
        self.revision: int | None = None
        self._agents: dict[str, Agent] = {}
        self._providers: dict[str, Provider] = {}
        self._summaries: dict[str, Test] = {}  # without their containers
        self._containers: dict[str, dict[str, ContainerRecord]] = {}  # test id -> container id -> record
        self._tests: dict[str, Test] = {}  # with their containers
        self._agent_list: list[Agent] = []
        self._provider_list: list[Provider] = []
        self._test_list: list[Test] = []

    @property
    def agents(self) -> list[Agent]:
        """Every agent, as ``GET /agents`` lists them."""
        return self._agent_list

    @property
    def providers(self) -> list[Provider]:
        """Every provider, as ``GET /providers`` lists them."""
        return self._provider_list

    @property
    def tests(self) -> list[Test]:
        """The tests, with their containers, as ``GET /tests?ended=N`` lists them."""
        return self._test_list

    def test(self, test_id: str) -> Test | None:
        """One test held, with its containers."""
        return self._tests.get(test_id)

    def apply(self, changes: Changes) -> Applied:
        """Take one answer of the feed; say what changed."""
        applied = Applied(full=changes.full)
        if changes.full:
            self._agents, self._providers, self._summaries = {}, {}, {}
            self._containers, self._tests = {}, {}
        _merge(self._agents, changes.agents, changes.removed_agents, applied.agents)
        _merge(self._providers, changes.providers, changes.removed_providers, applied.providers)
        for t in changes.tests:
            self._summaries[t.id] = t
            self._containers.setdefault(t.id, {})
            applied.tests.add(t.id)
        for key in changes.removed_tests:
            self._forget_test(key)
            applied.tests.add(key)
        reorder: set[str] = set()
        for c in changes.containers:
            held = self._containers.get(c.test_id)
            if held is None:
                continue  # a test this mirror does not keep (an old ended one)
            if c.id not in held:
                reorder.add(c.test_id)
            held[c.id] = c
            applied.tests.add(c.test_id)
        if applied.tests or changes.full:
            self._trim(applied)
            for key in applied.tests:
                summary = self._summaries.get(key)
                if summary is None:
                    continue
                held = self._containers[key]
                if key in reorder and not changes.full:  # the server lists them by index
                    held = self._containers[key] = dict(sorted(held.items(), key=lambda kv: kv[1].index))
                self._tests[key] = summary.model_copy(update={"containers": list(held.values())})
            self._test_list = [self._tests[key] for key in self._summaries]
        if applied.agents or changes.full:
            self._agent_list = list(self._agents.values())
        if applied.providers or changes.full:
            self._provider_list = sorted(self._providers.values(), key=lambda p: p.created_at)
        self.epoch, self.revision = changes.epoch, changes.revision
        return applied

    def _forget_test(self, key: str) -> None:
        self._summaries.pop(key, None)
        self._containers.pop(key, None)
        self._tests.pop(key, None)

    def _trim(self, applied: Applied) -> None:
        """Keep only the ``ended`` newest ended tests (by creation), as the server lists them."""
        if self.ended is None:
            return
        done = [t for t in self._summaries.values() if t.state in TERMINAL_TEST_STATES]
        if len(done) <= self.ended:
            return
        for t in sorted(done, key=lambda t: t.created_at)[: len(done) - self.ended]:
            self._forget_test(t.id)
            applied.tests.add(t.id)


R = TypeVar("R", Agent, Provider)


def _merge(held: dict[str, R], records: list[R], removed: list[str], changed: set[str]) -> None:
    """Put ``records`` in ``held`` by id and take the ``removed`` ids out; note every id touched."""
    for record in records:
        held[record.id] = record
        changed.add(record.id)
    for key in removed:
        held.pop(key, None)
        changed.add(key)
