"""Per-label figures made by hand: samples (``samples``), what an agent reports for them
(``cumulative``), what the server must answer (``by_hand``), two containers' worth (``ONE``, ``TWO``),
a test of two running containers on two agents (``Launched``) and the real app on a data dir that
survives it (``serving``)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from octotui.protocol import OTHER_LABEL, rt_bucket, rt_bucket_ms
from octotui.server.app import create_app
from octotui.server.settings import ServerSettings
from tests.support.app import ADMIN, Env
from tests.support.wire import ack, bearer, fleet, poll, report, spec

T0 = 1_700_000_000.0

#: (label, start offset s, elapsed ms, ok, code, message, bytes received, bytes sent) per container.
Sample = tuple[str, float, int, bool, str, str, int, int]


def samples(label: str, start: float, elapsed: list[int], fail_every: int = 0, code: str = "500") -> list[Sample]:
    """One sample of ``label`` every 0.1 s from ``start`` with these response times; every
    ``fail_every``-th one failed with ``code``."""
    out = []
    for i, ms in enumerate(elapsed):
        ok = not fail_every or (i + 1) % fail_every
        out.append(
            (label, start + i * 0.1, ms, bool(ok), "200" if ok else code, "OK" if ok else "boom", 1000 + ms, 200)
        )
    return out


def cumulative(rows: list[Sample]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What an agent reports for ``rows``: each label's cumulative figures, and the error counts."""
    labels: dict[str, dict[str, Any]] = {}
    errors: dict[tuple[str, str, str], int] = {}
    for label, start, ms, ok, code, message, received, sent in rows:
        f = labels.setdefault(label, {"label": label, "samples": 0, "errors": 0, "sum_ms": 0.0, "min_ms": None,
                                      "max_ms": None, "bytes_received": 0, "bytes_sent": 0, "first_ts": None,
                                      "last_ts": None, "histogram": {}})  # fmt: skip
        f["samples"] += 1
        f["errors"] += 0 if ok else 1
        f["sum_ms"] += ms
        f["min_ms"] = ms if f["min_ms"] is None else min(f["min_ms"], ms)
        f["max_ms"] = ms if f["max_ms"] is None else max(f["max_ms"], ms)
        f["bytes_received"] += received
        f["bytes_sent"] += sent
        ts, end = T0 + start, T0 + start + ms / 1000
        f["first_ts"] = ts if f["first_ts"] is None else min(f["first_ts"], ts)
        f["last_ts"] = end if f["last_ts"] is None else max(f["last_ts"], end)
        b = str(rt_bucket(ms))
        f["histogram"][b] = f["histogram"].get(b, 0) + 1
        if not ok:
            errors[label, code, message] = errors.get((label, code, message), 0) + 1
    errs = [{"label": k[0], "code": k[1], "message": k[2], "count": n} for k, n in errors.items()]
    return list(labels.values()), errs


def by_hand(rows: list[Sample], label: str) -> dict[str, Any]:
    """A label's merged figures computed from every sample (no histogram): what the server must say."""
    mine = [r for r in rows if r[0] == label]
    times = sorted(r[2] for r in mine)
    n = len(times)

    def pct(p: float) -> float:  # nearest rank on the samples, then the bucket's reported value
        return rt_bucket_ms(rt_bucket(times[max(1, math.ceil(p / 100 * n)) - 1]))

    span = max(T0 + r[1] + r[2] / 1000 for r in mine) - min(T0 + r[1] for r in mine)
    errors = sum(1 for r in mine if not r[3])
    return {
        "label": label, "samples": n, "errors": errors, "error_percent": round(errors * 100 / n, 3),
        "avg_ms": round(sum(times) / n, 3), "min_ms": times[0], "max_ms": times[-1],
        "p50_ms": pct(50), "p90_ms": pct(90), "p95_ms": pct(95), "p99_ms": pct(99),
        "throughput": round(n / span, 3), "received_kbps": round(sum(r[6] for r in mine) / 1024 / span, 3),
        "sent_kbps": round(sum(r[7] for r in mine) / 1024 / span, 3),
    }  # fmt: skip


@contextlib.asynccontextmanager
async def serving(data_dir: Path, **over: Any) -> AsyncIterator[Env]:
    """The real app (lifespan included) on ``data_dir``: closing it is a clean server stop."""
    values: dict[str, Any] = {"data_dir": data_dir, "admin_token": ADMIN, "heartbeat_interval": 0.5,
                              "late_after": 30.0, "offline_after": 60.0, "poll_timeout_min": 0.5,
                              "poll_timeout_max": 1.0, "flush_interval": 0.05, **over}  # fmt: skip
    settings = ServerSettings(**values)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1", headers=bearer(ADMIN)
        ) as http,
    ):
        yield Env(app, http, settings)


class Launched:
    """A test of two containers on two agents, both running (the agents acknowledged their launch)."""

    def __init__(self, env: Env, test_id: str, agents: list[tuple[str, str]], commands: list[dict[str, Any]]) -> None:
        self.env, self.id, self.agents, self.commands = env, test_id, agents, commands

    @classmethod
    async def start(cls, env: Env) -> Launched:
        agents = await fleet(env, "gen-1", "gen-2")
        test = (await env.http.post("/tests", json=spec(containers=2))).json()
        commands = []
        for agent_id, token in agents:
            (cmd,) = await poll(env, agent_id, token)
            await ack(env, agent_id, token, cmd["id"])
            commands.append(cmd)
        launched = cls(env, test["id"], agents, commands)
        await launched.beat(0, "running")
        await launched.beat(1, "running")
        return launched

    async def beat(self, i: int, state: str, rows: list[Sample] | None = None, **extra: Any) -> dict[str, Any]:
        """Container ``i`` reports ``state`` with the cumulative labels and errors of ``rows``."""
        if rows is not None:
            extra["labels"], extra["errors"] = cumulative(rows)
        agent_id, token = self.agents[i]
        return await self.env.beat(agent_id, token, containers=[report(self.commands[i], state, **extra)])

    async def labels(self, token: str = ADMIN) -> list[dict[str, Any]]:
        r = await self.env.http.get(f"/tests/{self.id}/labels", headers=bearer(token))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def errors(self, token: str = ADMIN) -> list[dict[str, Any]]:
        r = await self.env.http.get(f"/tests/{self.id}/errors", headers=bearer(token))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


# Two containers with overlapping labels: "home" on both (fast on one, slow with a >1 s tail on the
# other: log buckets), "login" on both with 5xx/4xx errors, "search" on the second only.
ONE = (
    samples("home", 0.0, [12, 15, 11, 40, 13, 14, 90, 12, 16, 13])
    + samples("login", 0.5, [100, 120, 110, 130, 105, 115], fail_every=3)
    + samples(OTHER_LABEL, 1.0, [7, 8])
)
TWO = (
    samples("home", 2.0, [20, 25, 1500, 22, 2300, 21, 24, 23, 26, 27, 980, 28])
    + samples("login", 3.0, [200, 210, 220, 230], fail_every=2, code="404")
    + samples("search", 4.0, [55, 60, 65])
)
