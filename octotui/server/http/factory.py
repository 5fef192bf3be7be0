"""The control server's ASGI app: routers, error handlers, the gate and the fast path, and a lifespan
that opens the store and runs the background work."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI

from octotui.protocol import API_PREFIX, VERSION
from octotui.server.controller import Controller
from octotui.server.domain.monitors import load as load_monitors
from octotui.server.http import errors
from octotui.server.http.fastpath import AgentFastPath
from octotui.server.http.gate import GateMiddleware
from octotui.server.http.routes import (
    agent_protocol,
    agents,
    audit,
    exports,
    files,
    jtl,
    monitors,
    providers,
    server,
    tests,
    tokens,
)
from octotui.server.settings import ServerSettings
from octotui.server.spool import remove_stale
from octotui.server.store import Store


def _routes() -> APIRouter:
    """Every route under ``/api/v1``; all but the public ones document the error answers."""
    root = APIRouter(prefix=API_PREFIX)
    root.include_router(server.public_router)
    api = APIRouter(responses=errors.ERRORS)
    for module in (server, providers, agents, agent_protocol, tests, exports, jtl, files, tokens, audit, monitors):
        api.include_router(module.router)
    root.include_router(api)
    return root


_BUILT: list[Any] = []
_SCHEMA: dict[str, Any] = {}


def _built_routes() -> list[Any]:
    """The routes of :func:`_routes` as an app holds them, built once per process: building them
    (a pydantic adapter per parameter and answer) cost 0.3-0.8 s an app; they hold no app state
    (a request finds its app's controller in ``request.app.state``)."""
    if not _BUILT:
        holder = FastAPI()
        before = len(holder.router.routes)
        holder.include_router(_routes())
        _BUILT.extend(holder.router.routes[before:])
    return _BUILT


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, generated once per process (the fast path asks for it at each app's
    first request: 0.5-1 s an app); every app of :func:`create_app` declares the same routes."""
    if app.openapi_schema is None:
        if not _SCHEMA:
            _SCHEMA.update(FastAPI.openapi(app))
        app.openapi_schema = _SCHEMA
    return app.openapi_schema


def create_app(settings: ServerSettings, *, fast_path: bool = True) -> FastAPI:
    """The control server's ASGI app; its lifespan opens the store and runs the background work.

    ``fast_path=False`` leaves the agents' hot routes to FastAPI alone (the parity tests compare both).
    """
    store = Store(settings.db_path, settings.database)
    controller = Controller(settings, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        controller.load(await store.open())
        await load_monitors(controller)
        await remove_stale(settings.files_dir, settings.results_dir)  # uploads an earlier run's kill cut
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run_background(stop), name="octotui-background")
        try:
            yield
        finally:
            stop.set()
            controller.commands.close()
            await task  # its end makes the last writes (ticks.run_background)
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
    errors.install(app)
    app.router.routes.extend(_built_routes())
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    if fast_path:  # inside the gate: it sees authenticated requests with bounded bodies
        app.add_middleware(AgentFastPath, api=app)
    app.add_middleware(
        GateMiddleware,
        controller=controller,
        max_body=settings.max_body_bytes,
        max_plan=settings.max_plan_bytes,
        max_jtl=settings.max_jtl_bytes,
        max_file=settings.max_file_bytes,
    )
    return app
