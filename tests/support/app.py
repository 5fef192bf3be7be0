"""The control server's real app in process (``httpx.ASGITransport`` + its lifespan), as fixtures:
``start_server`` starts one with settings overrides (several may run at once), ``env`` one with the
defaults, on SQLite or PostgreSQL (``store_kind``, see fixtures.py). Registered for every test
module in ``tests/conftest.py``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from octotui.server.app import create_app
from octotui.server.controller import Controller
from octotui.server.settings import ServerSettings
from tests.support import wire

ADMIN = "admin-secret"


@dataclass
class Env:
    app: FastAPI
    http: httpx.AsyncClient  # admin client
    settings: ServerSettings
    #: Registration tokens by provider id, as created here (the server never shows one again).
    provider_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def ctl(self) -> Controller:
        return self.app.state.controller  # type: ignore[no-any-return]

    async def provider(self, name: str = "local") -> dict[str, Any]:
        r = await self.http.post("/providers", json={"name": name})
        assert r.status_code == 201, r.text
        self.provider_tokens[r.json()["id"]] = r.json()["token"]
        return r.json()  # type: ignore[no-any-return]

    async def register(self, token: str, name: str = "host1", location: str = "paris", **extra: Any) -> tuple[str, str]:
        return await wire.register(self.http, token, name, location, **extra)

    async def beat(
        self, agent_id: str, token: str, *, cpu: float = 10.0, mem: float = 20.0, docker: bool = True, **extra: Any
    ) -> dict[str, Any]:
        return await wire.beat(self.http, agent_id, token, cpu=cpu, mem=mem, docker=docker, **extra)

    async def snapshot(self) -> tuple[Any, ...]:
        """Everything an operator can read, to prove a refused request changed nothing."""
        out = []
        for path in ("/providers", "/agents", "/tests"):
            r = await self.http.get(path)
            assert r.status_code == 200
            out.append(r.json())
        return tuple(out)


Starter = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start_server(tmp_path: Path, store_database: Callable[[Path], str | None]) -> AsyncIterator[Starter]:
    """Starts the real app (lifespan included) with settings overrides; several may run at once."""
    async with contextlib.AsyncExitStack() as stack:
        count = 0

        async def start(**overrides: Any) -> Env:
            nonlocal count
            count += 1
            values: dict[str, Any] = {
                "data_dir": tmp_path / f"server{count}", "admin_token": ADMIN, "heartbeat_interval": 0.5,
                "late_after": 30.0, "offline_after": 60.0, "poll_timeout_min": 0.5, "poll_timeout_max": 1.0,
                "redeliver_after": 30.0, "flush_interval": 0.05, "samples_window": 50,
            }  # fmt: skip
            values.update(overrides)
            values.setdefault("database", store_database(values["data_dir"]))  # tests/support/fixtures.py
            settings = ServerSettings(**values)
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1", headers=wire.bearer(ADMIN)
            )
            await stack.enter_async_context(http)
            return Env(app, http, settings)

        yield start


@pytest.fixture
async def env(start_server: Starter) -> Env:
    """The real app with the default test settings."""
    return await start_server()
