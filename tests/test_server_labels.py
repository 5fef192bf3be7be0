"""Per-label figures and errors (issue 12, parts 1-2, server side) through the real app, with agents
speaking the wire protocol: merged exactly over containers, live and final, incremental reports,
repeated heartbeats, strays, the change feed, and the same answers after a server restart."""

from __future__ import annotations

import contextlib
import math
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from octotui.protocol import OTHER_LABEL, rt_bucket, rt_bucket_ms
from octotui.server.app import create_app
from octotui.server.settings import ServerSettings
from tests.support.admin import create_provider
from tests.support.app import ADMIN, Env
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until
from tests.support.wire import PLAN, ack, bearer, fleet, poll, report, spec

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


async def test_two_containers_merge_exactly(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await Launched.start(env)
        await t.beat(0, "running", ONE, labels_folded=True)
        await t.beat(1, "running", TWO)
        got = await t.labels()
        everything = ONE + TWO
        assert [x["label"] for x in got] == sorted(["home", "login", OTHER_LABEL, "search"])
        assert got == [by_hand(everything, x["label"]) for x in got]
        home = next(x for x in got if x["label"] == "home")
        # 22 samples: rank ceil(0.95 * 22) = 21 is 1500 ms, in the 0.5 % bucket starting at 1497.8.
        assert home["p95_ms"] == rt_bucket_ms(rt_bucket(1500)) == 1497.8 and home["min_ms"] == 11
        assert home["max_ms"] == 2300 and home["samples"] == 22
        # from 0.0 s (container 1's first start) to 2.4 s + 2300 ms (container 2's latest end)
        assert home["throughput"] == round(22 / 4.7, 3) == 4.681
        assert await t.errors() == [
            {"label": "login", "code": "404", "message": "boom", "count": 2},
            {"label": "login", "code": "500", "message": "boom", "count": 2},
        ]


async def test_incremental_and_repeated_reports(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await Launched.start(env)
        await t.beat(0, "running", ONE)
        await t.beat(1, "running", TWO)
        before = await t.labels()
        # The second container's "login" grew: only that label is reported (cumulative).
        more = samples("login", 3.0, [200, 210, 220, 230, 240, 250], fail_every=2, code="404")
        only_login = [r for r in TWO if r[0] != "login"] + more
        labels, errors = cumulative([r for r in only_login if r[0] == "login"])
        await t.beat(1, "running", labels=labels, errors=errors)
        after = await t.labels()
        assert after == [by_hand(ONE + only_login, x["label"]) for x in after]
        assert [x for x in after if x["label"] != "login"] == [x for x in before if x["label"] != "login"]
        assert next(x for x in after if x["label"] == "login")["samples"] == 12
        assert {(e["code"], e["count"]) for e in await t.errors()} == {("404", 3), ("500", 2)}
        # A heartbeat sent again (its answer was lost) counts nothing twice and writes nothing.
        await env.ctl.flush(all_labels=True)
        writes: list[int] = []
        save = env.ctl.store.save_labels

        async def counting(rows: list[Any]) -> None:
            writes.append(len(rows))
            await save(rows)

        env.ctl.store.save_labels = counting  # type: ignore[method-assign]
        await t.beat(1, "running", labels=labels, errors=errors)
        await t.beat(1, "running", labels=labels, errors=errors)
        await env.ctl.flush(all_labels=True)
        assert await t.labels() == after and writes == []
        # A changed label is written, and only it.
        labels[0]["bytes_sent"] += 1
        await t.beat(1, "running", labels=labels)
        await env.ctl.flush(all_labels=True)
        assert writes == [1]


async def test_a_stray_report_is_ignored(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await Launched.start(env)
        await t.beat(0, "running", ONE)
        before = await t.labels(), await t.errors()
        # The second agent reports labels for the first agent's container.
        labels, errors = cumulative(TWO)
        agent_id, token = t.agents[1]
        r = await env.beat(agent_id, token, containers=[report(t.commands[0], "running", labels=labels, errors=errors)])
        assert r["stop"] == [t.commands[0]["container_id"]]  # a stray, as any container it has no record of
        assert (await t.labels(), await t.errors()) == before


async def test_unknown_test_is_404_and_a_read_only_token_reads(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await Launched.start(env)
        await t.beat(0, "running", ONE)
        for what in ("labels", "errors"):
            r = await env.http.get(f"/tests/t-000000000000/{what}")
            assert r.status_code == 404 and "t-000000000000" in r.json()["detail"]
        reader = await env.ctl.add_operator_token("read-only", "watcher")
        assert await t.labels(reader) == await t.labels()
        assert await t.errors(reader) == await t.errors() != []
        agent_token = t.agents[0][1]
        assert (await env.http.get(f"/tests/{t.id}/labels", headers=bearer(agent_token))).status_code == 403


async def test_final_after_the_end_and_after_a_restart(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await Launched.start(env)
        await t.beat(0, "running", ONE)
        await t.beat(1, "running", TWO)
        # The first container ends: its final labels (one more sample) come with its end.
        last = [*ONE, *samples("search", 9.0, [70])]
        await t.beat(0, "finished", last, exit_code=0)
        await t.beat(1, "finished", exit_code=0)
        assert (await env.http.get(f"/tests/{t.id}")).json()["state"] == "finished"
        final = await t.labels(), await t.errors()
        assert final[0] == [by_hand(last + TWO, x["label"]) for x in final[0]]
        await env.ctl.flush()
        # Once stored, an ended test's labels leave memory: read from the store, the same.
        assert not {c["container_id"] for c in t.commands} & set(env.ctl.labels)
        assert (await t.labels(), await t.errors()) == final
        test_id = t.id
    async with serving(tmp_path / "d") as env:
        for what, want in zip(("labels", "errors"), final, strict=True):
            r = await env.http.get(f"/tests/{test_id}/{what}")
            assert r.status_code == 200 and r.json() == want


async def test_a_running_test_keeps_its_labels_over_a_restart(tmp_path: Path) -> None:
    async with serving(tmp_path / "d", labels_save_interval=3600.0) as env:
        t = await Launched.start(env)
        await t.beat(0, "running", ONE)
        await t.beat(1, "running", TWO)
        live = await t.labels(), await t.errors()
        test_id, agents, commands = t.id, t.agents, t.commands
    async with serving(tmp_path / "d") as env:
        t = Launched(env, test_id, agents, commands)
        assert (await t.labels(), await t.errors()) == live
        # After the restart the agent sends only what changes: the rest is what was kept.
        more = [*TWO, *samples("search", 4.3, [75, 80])]
        labels, errors = cumulative([r for r in more if r[0] == "search"])
        await t.beat(1, "running", labels=labels, errors=errors)
        got = await t.labels()
        assert got == [by_hand(ONE + more, x["label"]) for x in got]


async def test_late_labels_of_an_ended_test_are_kept_and_shown(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await Launched.start(env)
        await t.beat(0, "finished", ONE, exit_code=0)
        await t.beat(1, "finished", TWO, exit_code=0)
        await env.ctl.flush()
        feed = (await env.http.get("/changes")).json()
        # The JTL's last rows, read after the container ended, come in the next heartbeat.
        more = [*TWO, *samples("search", 4.3, [75])]
        labels, errors = cumulative([r for r in more if r[0] == "search"])
        await t.beat(1, "finished", labels=labels, errors=errors, exit_code=0)
        changes = (await env.http.get("/changes", params={"since": feed["revision"], "epoch": feed["epoch"]})).json()
        assert [x["id"] for x in changes["tests"]] == [t.id]
        want = [by_hand(ONE + more, x) for x in sorted(("home", "login", OTHER_LABEL, "search"))]
        assert await t.labels() == want
        test_id = t.id
    async with serving(tmp_path / "d") as env:
        assert (await env.http.get(f"/tests/{test_id}/labels")).json() == want


def test_a_server_killed_mid_test_keeps_what_it_had_stored(tmp_path: Path) -> None:
    """A real ``octotui server`` SIGKILLed while a test runs: the labels stored within
    ``--labels-save-interval`` come back (the agents send a label again only when it changes)."""
    server = ServerProcess(tmp_path / "server", "--labels-save-interval", "0.5").start()
    try:
        api = server.client()
        token = create_provider(api, "local")["token"]
        host = {"ts": time.time(), "cpu_percent": 5.0, "memory_percent": 20.0, "memory_total": 8 * 1024**3}
        docker = {"available": True, "version": "20.10"}
        agents = []
        for name in ("gen-1", "gen-2"):
            r = api.post("/agents/register", json={"name": name, "location": "paris"}, headers=bearer(token))
            agents.append((r.json()["agent_id"], r.json()["agent_token"]))
            api.post(f"/agents/{agents[-1][0]}/heartbeat", json={"host": host, "docker": docker},
                     headers=bearer(agents[-1][1])).raise_for_status()  # fmt: skip
        test = api.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 2}).json()
        for (agent_id, agent_token), rows in zip(agents, (ONE, TWO), strict=True):
            (cmd,) = api.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=bearer(agent_token)).json()
            labels, errors = cumulative(rows)
            beat = {"host": host, "docker": docker,
                    "containers": [report(cmd, "running", labels=labels, errors=errors)]}  # fmt: skip
            api.post(f"/agents/{agent_id}/heartbeat", json=beat, headers=bearer(agent_token)).raise_for_status()
        live = [api.get(f"/tests/{test['id']}/{what}").json() for what in ("labels", "errors")]
        assert live[0] == [by_hand(ONE + TWO, x["label"]) for x in live[0]] and live[1]

        def stored() -> int:
            with contextlib.closing(sqlite3.connect(f"file:{server.data_dir / 'octotui.db'}?mode=ro", uri=True)) as db:
                return int(db.execute("SELECT count(*) FROM container_labels").fetchone()[0])

        wait_until(lambda: stored() == 6, timeout=10, what="the 6 labels of the 2 containers stored")
        server.restart(signal.SIGKILL)
        api = server.client()
        assert [api.get(f"/tests/{test['id']}/{what}").json() for what in ("labels", "errors")] == live
    finally:
        server.stop()
