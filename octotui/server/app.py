"""The HTTP API: routes under ``/api/v1`` that translate requests into :class:`Controller` calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from octotui.protocol import (
    API_PREFIX,
    VERSION,
    Agent,
    AgentMetrics,
    AuditEntry,
    Changes,
    Command,
    CommandAck,
    ErrorBody,
    Health,
    Heartbeat,
    HeartbeatResponse,
    Placement,
    Provider,
    ProviderCreate,
    ProviderRename,
    RegisterRequest,
    RegisterResponse,
    ServerInfo,
    Test,
    TestCreate,
    TestSeries,
    TokenCreate,
    TokenCreated,
    TokenInfo,
)
from octotui.server.auth import Principal, require_agent, require_operator, require_provider
from octotui.server.controller import Controller
from octotui.server.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    Unauthorized,
    Unstorable,
)
from octotui.server.fastpath import AgentFastPath
from octotui.server.hub import poll_wait
from octotui.server.settings import ServerSettings
from octotui.server.store import Store

log = logging.getLogger("octotui.server")

PUBLIC_PATHS = frozenset({f"{API_PREFIX}/health", f"{API_PREFIX}/openapi.json", f"{API_PREFIX}/docs"})


async def _send_error(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class GateMiddleware:
    """Authenticates every API request and bounds body sizes, before any body is parsed.

    So a request without a valid token gets 401 whatever its body, and an oversized body gets 413
    without being read into memory.
    """

    def __init__(self, app: ASGIApp, controller: Controller, max_body: int, max_plan: int) -> None:
        self.app = app
        self.controller = controller
        self.max_body = max_body
        self.max_plan = max_plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        path: str = scope["path"]
        if path.startswith(API_PREFIX) and path not in PUBLIC_PATHS:
            auth = headers.get(b"authorization")
            try:
                principal = self.controller.tokens.resolve(auth.decode("latin-1") if auth else None)
            except Unauthorized as exc:
                await _send_error(send, *status_of(exc)[:1], str(exc), status_of(exc)[1])
                return
            scope.setdefault("state", {})["principal"] = principal
        length = headers.get(b"content-length")
        too_big = f"request body larger than {self.max_body} bytes (JMX plans: at most {self.max_plan} bytes)"
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_error(send, 400, "invalid Content-Length header")
                return
            if declared > self.max_body:
                await _send_error(send, 413, too_big)
                return
            await self.app(scope, receive, send)
            return
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            await self.app(scope, receive, send)
            return
        # Chunked body: read it here, bounded, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_error(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# Dependencies are coroutines on purpose: FastAPI runs a plain ``def`` dependency in its thread
# pool, which cost 15 % of the event loop at 5,000 agents and put heartbeat p99 at seconds
# (docs/BENCHMARKS.md); these do no blocking work.


async def _principal(request: Request) -> Principal:
    return request.state.principal  # type: ignore[no-any-return]


async def _controller(request: Request) -> Controller:
    return request.app.state.controller  # type: ignore[no-any-return]


async def reader(request: Request) -> Principal:
    """Any operator token (admin or read-only)."""
    principal: Principal = request.state.principal
    require_operator(principal, write=False)
    return principal


async def writer(request: Request) -> Principal:
    """An admin token."""
    principal: Principal = request.state.principal
    require_operator(principal, write=True, what=f"{request.method} {request.url.path}")
    return principal


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


async def _audit(request: Request, who: Principal, action: str, target: str, detail: str = "") -> None:
    await request.app.state.controller.audit(who, action, target, detail, _address(request))


Ctl = Annotated[Controller, Depends(_controller)]
Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
Anyone = Annotated[Principal, Depends(_principal)]


#: Every refusal answers ``{"detail": ...}``; documented so that clients (and schemathesis) know.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad request (e.g. an invalid Content-Length)"},
    401: {"model": ErrorBody, "description": "missing, malformed, invalid or revoked token"},
    403: {"model": ErrorBody, "description": "this token's role may not use this route"},
    404: {"model": ErrorBody, "description": "unknown id"},
    409: {"model": ErrorBody, "description": "conflicts with the current state (name taken, busy, no room)"},
    413: {"model": ErrorBody, "description": "request body or plan over the limit (see ServerInfo.max_plan_bytes)"},
    422: {"model": ErrorBody, "description": "malformed JSON, wrong types or values, invalid plan"},
}


def _routes() -> APIRouter:
    public = APIRouter(prefix=API_PREFIX)

    @public.get("/health", response_model=Health, tags=["server"])
    async def health() -> Health:
        return Health()

    api = APIRouter(responses=ERRORS)

    @api.get("/info", response_model=ServerInfo, tags=["server"])
    async def info(ctl: Ctl, who: Anyone) -> ServerInfo:
        s = ctl.settings
        return ServerInfo(
            version=VERSION,
            url=ctl.url,
            role=who.kind if who.is_operator else None,
            heartbeat_interval=s.heartbeat_interval,
            late_after=s.late_after,
            offline_after=s.offline_after,
            default_image=s.default_image,
            max_plan_bytes=s.max_plan_bytes,
        )

    # --- providers -----------------------------------------------------------------------------

    @api.get("/providers", response_model=list[Provider], tags=["providers"], response_class=ListingResponse)
    async def list_providers(ctl: Ctl, _: Reader) -> list[Provider]:
        return [ctl.provider_out(p) for p in ctl.sorted_providers()]

    @api.post("/providers", response_model=Provider, status_code=201, tags=["providers"])
    async def create_provider(body: ProviderCreate, ctl: Ctl, who: Writer, request: Request) -> Provider:
        p, token = await ctl.create_provider(body.name)
        await _audit(request, who, "provider.create", p.id, f"name={p.name}")
        return ctl.provider_out(p, token)

    @api.get("/providers/{provider_id}", response_model=Provider, tags=["providers"])
    async def get_provider(provider_id: str, ctl: Ctl, _: Reader) -> Provider:
        return ctl.provider_out(ctl.get_provider(provider_id))

    @api.patch("/providers/{provider_id}", response_model=Provider, tags=["providers"])
    async def rename_provider(
        provider_id: str, body: ProviderRename, ctl: Ctl, who: Writer, request: Request
    ) -> Provider:
        old = ctl.get_provider(provider_id).name
        p = await ctl.rename_provider(provider_id, body.name)
        await _audit(request, who, "provider.rename", p.id, f"{old} -> {p.name}")
        return ctl.provider_out(p)

    @api.delete("/providers/{provider_id}", status_code=204, tags=["providers"])
    async def delete_provider(provider_id: str, ctl: Ctl, who: Writer, request: Request) -> Response:
        name = ctl.get_provider(provider_id).name
        await ctl.delete_provider(provider_id)
        await _audit(request, who, "provider.delete", provider_id, f"name={name}")
        return Response(status_code=204)

    @api.post("/providers/{provider_id}/rotate-token", response_model=Provider, tags=["providers"])
    async def rotate_token(provider_id: str, ctl: Ctl, who: Writer, request: Request) -> Provider:
        """A new registration token; agents already registered keep their own tokens."""
        p, token = await ctl.rotate_provider_token(provider_id)
        await _audit(request, who, "provider.rotate-token", p.id, f"name={p.name}")
        return ctl.provider_out(p, token)

    # --- agents: operator side -----------------------------------------------------------------

    @api.get("/agents", response_model=list[Agent], tags=["agents"], response_class=ListingResponse)
    async def list_agents(ctl: Ctl, _: Reader) -> list[Agent]:
        return [ctl.agent_out(a) for a in ctl.agents.values()]

    @api.get("/agents/{agent_id}", response_model=Agent, tags=["agents"], response_class=ListingResponse)
    async def get_agent(agent_id: str, ctl: Ctl, _: Reader) -> Agent:
        return ctl.agent_out(ctl.get_agent(agent_id))

    @api.delete("/agents/{agent_id}", status_code=204, tags=["agents"], responses={202: {}, 409: {}})
    async def delete_agent(
        agent_id: str,
        ctl: Ctl,
        who: Writer,
        request: Request,
        force: Annotated[bool, Query(description="also an agent running containers: they are stopped first")] = False,
    ) -> Response:
        """Forget an agent and revoke its token at once (204). An agent running containers: 409
        naming its tests, unless ``force``; forced, 202 while its containers are stopped and hand in
        their results (it is forgotten once they ended), 204 when it is offline (they are lost)."""
        a = ctl.get_agent(agent_id)
        name = a.name
        done = await ctl.delete_agent(agent_id, force=force)
        await _audit(request, who, "agent.delete", agent_id, f"name={name}" + (" force=true" if force else ""))
        return Response(status_code=204 if done else 202)

    @api.get("/agents/{agent_id}/metrics", response_model=AgentMetrics, tags=["agents"])
    async def agent_metrics(
        agent_id: str, ctl: Ctl, _: Reader, seconds: Annotated[float | None, Query(gt=0, le=86400)] = None
    ) -> AgentMetrics:
        ctl.get_agent(agent_id)
        return AgentMetrics(agent_id=agent_id, samples=ctl.hosts.get(agent_id, seconds))

    # --- agents: agent side --------------------------------------------------------------------

    @api.post("/agents/register", response_model=RegisterResponse, tags=["agent protocol"])
    async def register(body: RegisterRequest, ctl: Ctl, who: Anyone, request: Request) -> RegisterResponse:
        answer = await ctl.register(require_provider(who), body)
        detail = f"name={body.name} location={body.location} version={body.version}"
        await _audit(request, who, "agent.register", answer.agent_id, detail)
        return answer

    @api.post("/agents/{agent_id}/heartbeat", response_model=HeartbeatResponse, tags=["agent protocol"])
    async def heartbeat(agent_id: str, body: Heartbeat, ctl: Ctl, who: Anyone) -> HeartbeatResponse:
        require_agent(who, agent_id)
        return ctl.heartbeat(agent_id, body)

    @api.get("/agents/{agent_id}/commands", response_model=list[Command], tags=["agent protocol"])
    async def poll_commands(
        agent_id: str,
        ctl: Ctl,
        who: Anyone,
        request: Request,
        wait_s: Annotated[float | None, Query(alias="timeout", ge=0, le=3600)] = None,
        fresh: bool = False,
    ) -> list[Command]:
        """Long poll: queued commands at once, else waits (20-30 s, randomised, or ``timeout``, capped)."""
        require_agent(who, agent_id)
        ctl.get_agent(agent_id)
        s = ctl.settings
        wait = poll_wait(s.poll_timeout_min, s.poll_timeout_max, wait_s)
        return await ctl.commands.wait_while_connected(agent_id, wait, fresh, request.receive)

    @api.post("/agents/{agent_id}/commands/{command_id}/ack", status_code=204, tags=["agent protocol"])
    async def ack_command(agent_id: str, command_id: str, body: CommandAck, ctl: Ctl, who: Anyone) -> Response:
        require_agent(who, agent_id)
        ctl.ack(agent_id, command_id, body)
        return Response(status_code=204)

    # --- tests ---------------------------------------------------------------------------------

    @api.post("/tests", response_model=Test | Placement, status_code=201, tags=["tests"])
    async def create_test(
        body: TestCreate,
        ctl: Ctl,
        who: Writer,
        response: Response,
        request: Request,
        idempotency_key: Annotated[
            str | None,
            Header(
                min_length=8,
                max_length=128,
                pattern=r"^[!-~]+$",
                description="a launch sent again with the same key (after a lost answer) answers with the "
                "test the first one made (200, `Idempotent-Replayed: true`) instead of starting a second",
            ),
        ] = None,
    ) -> Test | Placement:
        result, replayed = await ctl.create_test(body, idempotency_key)
        if replayed:  # made by the first request: not a second launch, not audited again
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
        elif isinstance(result, Placement):
            response.status_code = 200  # a dry run changes nothing: not audited
        else:
            detail = f"name={result.name} provider={result.provider_name} containers={len(result.containers)}"
            await _audit(request, who, "test.create", result.id, detail)
        return result

    @api.get("/tests", response_model=list[Test], tags=["tests"], response_class=ListingResponse)
    async def list_tests(
        ctl: Ctl,
        _: Reader,
        ended: Annotated[
            int | None, Query(ge=0, le=100_000, description="keep only the N most recent ended tests (all live ones)")
        ] = None,
    ) -> list[Test]:
        """Every test, oldest first; with ``ended``, every live test and only the newest ended ones."""
        return ctl.listed_tests(ended)

    @api.get("/changes", response_model=Changes, tags=["server"], response_class=ListingResponse)
    async def changes(
        ctl: Ctl,
        _: Reader,
        since: Annotated[
            int | None, Query(ge=0, le=2**62, description="the revision of the previous answer (absent: everything)")
        ] = None,
        epoch: Annotated[str | None, Query(max_length=64, description="the epoch of the previous answer")] = None,
        ended: Annotated[
            int | None, Query(ge=0, le=100_000, description="the whole state keeps only the N newest ended tests")
        ] = None,
    ) -> Any:
        """What changed after revision ``since`` of ``epoch``: agents, providers, tests (without their
        containers) and containers, and the ids removed; or the whole state (``full``) when the
        server cannot answer exactly: no ``since``, another epoch (it restarted), too old a revision."""
        return ctl.changes(since, epoch, ended)

    @api.get("/tests/{test_id}", response_model=Test, tags=["tests"], response_class=ListingResponse)
    async def get_test(test_id: str, ctl: Ctl, _: Reader) -> Test:
        return ctl.test_out(ctl.get_test(test_id))

    @api.get("/tests/{test_id}/series", response_model=TestSeries, tags=["tests"])
    async def test_series(test_id: str, ctl: Ctl, _: Reader) -> TestSeries:
        ctl.get_test(test_id)
        return TestSeries(test_id=test_id, points=ctl.series.get(test_id))

    @api.post("/tests/{test_id}/stop", response_model=Test, tags=["tests"])
    async def stop_test(test_id: str, ctl: Ctl, who: Writer, request: Request) -> Test:
        test = await ctl.stop_test(test_id, by=who.subject or who.kind)
        await _audit(request, who, "test.stop", test_id, f"name={test.name}")
        return test

    @api.post("/tests/{test_id}/containers/{container_id}/stop", response_model=Test, tags=["tests"])
    async def stop_container(test_id: str, container_id: str, ctl: Ctl, who: Writer, request: Request) -> Test:
        test = await ctl.stop_one(test_id, container_id)
        await _audit(request, who, "container.stop", container_id, f"test={test_id}")
        return test

    # --- operator tokens and audit -------------------------------------------------------------

    @api.post("/tokens", response_model=TokenCreated, status_code=201, tags=["tokens"])
    async def create_token(body: TokenCreate, ctl: Ctl, who: Writer, request: Request) -> TokenCreated:
        """A named operator token; its secret is in this answer only."""
        created = await ctl.create_token(body.name, body.role)
        await _audit(request, who, "token.create", created.name, f"role={created.role}")
        return created

    @api.get("/tokens", response_model=list[TokenInfo], tags=["tokens"])
    async def list_tokens(ctl: Ctl, _: Reader) -> list[TokenInfo]:
        return ctl.token_list()

    @api.delete("/tokens/{name}", status_code=204, tags=["tokens"])
    async def revoke_token(name: str, ctl: Ctl, who: Writer, request: Request) -> Response:
        """Revoke at once: the next request with that token gets 401."""
        await ctl.revoke_token(name)
        await _audit(request, who, "token.revoke", name)
        return Response(status_code=204)

    @api.get("/audit", response_model=list[AuditEntry], tags=["audit"])
    async def audit(
        ctl: Ctl,
        _: Reader,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[int | None, Query(ge=1, le=2**62, description="only entries with a smaller id")] = None,
    ) -> list[AuditEntry]:
        """Changes made through the API, newest first; page with ``before`` = the last id seen."""
        return await ctl.store.audit(limit, before)

    public.include_router(api)
    return public


class ListingResponse(JSONResponse):
    """JSON of the listings every client reads: one record holding text that cannot be encoded
    (a lone surrogate that slipped past validation) must not make them fail for everyone.
    Such characters become ``?``; the rest of the answer is exact."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            log.warning("a listing holds text that is not valid Unicode (%s): answered with '?' for it", exc.reason)
            return text.encode("utf-8", "replace")


#: Domain errors (``errors.py``) and their status codes: the one place they meet HTTP. First match wins.
DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 422),
    (TooLarge, 413),
    (Unauthorized, 401),
    (Forbidden, 403),
)


def status_of(exc: DomainError) -> tuple[int, dict[str, str] | None]:
    """The status code of a domain error (:data:`DOMAIN_STATUS`) and the headers its answer carries."""
    status = next((code for kind, code in DOMAIN_STATUS if isinstance(exc, kind)), 400)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) and exc.challenge else None
    return status, headers


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, Unstorable):
        log.error("%s %s: %s", request.method, request.url.path, exc)
    status, headers = status_of(exc)
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer, but a body that is not UTF-8 says so (FastAPI: "There was an error parsing the body")."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        bad = exc.__cause__
        detail = f"the body is not valid UTF-8 JSON (byte {bad.start}: {bad.object[bad.start : bad.start + 1]!r})"
        exc = StarletteHTTPException(400, detail)
    return await http_exception_handler(request, exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail: list[dict[str, Any]] = []
    for err in exc.errors():
        msg = str(err.get("msg", ""))
        ctx = err.get("ctx") or {}
        if err.get("type") == "json_invalid" and "error" in ctx:
            msg = f"malformed JSON: {ctx['error']}"
        loc = list(err.get("loc", ()))
        content_type = request.headers.get("content-type", "")
        if loc == ["body"] and "json" not in content_type:  # e.g. curl -d without -H
            msg += f" (the body must be JSON sent with Content-Type: application/json, not {content_type or 'none'})"
        item = {"loc": loc, "msg": msg, "type": str(err.get("type", ""))}
        detail.append(item)
    return JSONResponse({"detail": detail}, status_code=422)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """A write the store refused (disk full, read-only): say so; the change was not made."""
    message = str(exc)
    log.error("store write failed on %s %s: %s", request.method, request.url.path, message)
    if "full" in message:
        return JSONResponse({"detail": f"the server's disk is full, nothing was changed ({message})"}, status_code=507)
    return JSONResponse({"detail": f"the server's store cannot be written, nothing was changed ({message})"}, 503)


def create_app(settings: ServerSettings, *, fast_path: bool = True) -> FastAPI:
    """The control server's ASGI app; its lifespan opens the store and runs the background work.

    ``fast_path=False`` leaves the agents' hot routes to FastAPI alone (the parity tests compare both).
    """
    store = Store(settings.db_path)
    controller = Controller(settings, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        controller.load(await store.open())
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run_background(stop), name="octotui-background")
        try:
            yield
        finally:
            stop.set()
            controller.commands.close()
            await task
            await controller.flush()
            await controller.save_last_seen()
            await store.close()

    app = FastAPI(
        title="octotui control server",
        version=VERSION,
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        # No OpenTelemetry here: FastAPI's per-request check for a provider alone cost 3 % of the
        # server's CPU at 5,000 agents (it reads the environment each time).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.controller = controller
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sqlite3.OperationalError, _store_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.include_router(_routes())
    if fast_path:  # inside the gate: it sees authenticated requests with bounded bodies
        app.add_middleware(AgentFastPath, api=app)
    app.add_middleware(
        GateMiddleware, controller=controller, max_body=settings.max_body_bytes, max_plan=settings.max_plan_bytes
    )
    return app
