"""Results kept and handed back (issue 12, server side of parts 3, 5, 7, 8, 9): labels asked for
again after a restart, ``Test.stopped``, the whole timeline kept (downsampled), the agents' JTL
uploads and the merged JTL, the deletion of an ended test and its plan read back. Through the real
app with agents speaking the wire protocol, and a real server process where a restart matters."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import random
import signal
import socket
import sqlite3
import time
from array import array
from pathlib import Path
from typing import Any

import httpx
import pytest

from octotui.client import Client
from octotui.protocol import rt_bucket, rt_bucket_ms
from octotui.server.domain import jtl as jtl_domain
from octotui.server.domain import series as series_domain
from octotui.server.domain.labels import WANTED_ASKS
from octotui.server.timeline import LABEL_MAX_POINTS, GeneratorTimeline, LabelTimeline, Timeline
from tests.support.admin import create_provider
from tests.support.app import ADMIN, Env
from tests.support.labelkit import ONE, TWO, Launched, Sample, by_hand, cumulative, samples, serving
from tests.support.processes import ServerProcess
from tests.support.rawhttp import Side, as_kind, exchange, request
from tests.support.rawhttp import beat as fast_beat
from tests.support.rawhttp import serving as serving_uvicorn
from tests.support.waiting import wait_until, wait_until_async
from tests.support.wire import PLAN, ack, bearer, figures, fleet, poll, report, spec

HEADER = (
    b"timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,bytes,"
    b"sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect"
)


def jtl_rows(container: int, count: int, start: int = 0) -> bytes:
    """``count`` JTL rows of a container, in completion order (not sorted by their start time)."""
    out = []
    for i in range(start, start + count):
        ts = 1_700_000_000_000 + i * 10 - (i % 3) * 7  # a later row may have started earlier
        ok = "true" if i % 5 else "false"
        out.append(f"{ts},{i % 97},home,200,OK,gen-{container} 1-1,text,{ok},,1200,150,1,1,http://t/,5,0,1\n".encode())
    return b"".join(out)


def jtl_file(container: int, count: int) -> bytes:
    return HEADER + b"\n" + jtl_rows(container, count)


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def upload(
    env: Env, agent: tuple[str, str], container_id: str, body: bytes, checksum: str | None = "", **headers: str
) -> httpx.Response:
    """PUT a container's JTL as an agent does (the checksum of ``body`` unless given; None: no header)."""
    agent_id, token = agent
    sent = {**bearer(token), "Content-Type": "application/octet-stream", "Content-Encoding": "gzip", **headers}
    if checksum is not None:
        sent["X-Checksum-Sha256"] = checksum or sha(body)
    return await env.http.put(f"/agents/{agent_id}/containers/{container_id}/jtl", content=body, headers=sent)


def stored(env: Env, table: str, where: str = "", *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{env.settings.db_path}?mode=ro", uri=True)) as db:
        return [tuple(r) for r in db.execute(f"SELECT * FROM {table} {where}", args)]


async def started(env: Env, agents: list[tuple[str, str]] | None = None) -> Launched:
    """A test of two containers on two agents (``gen-1``, ``gen-2``: registered unless given), running."""
    if agents is None:
        return await Launched.start(env)
    test = (await env.http.post("/tests", json=spec(containers=2))).json()
    commands = []
    for agent_id, token in agents:
        (cmd,) = await poll(env, agent_id, token)
        await ack(env, agent_id, token, cmd["id"])
        commands.append(cmd)
    t = Launched(env, test["id"], agents, commands)
    await t.beat(0, "running")
    await t.beat(1, "running")
    return t


async def ended(env: Env, agents: list[tuple[str, str]] | None = None) -> Launched:
    """A test of two containers on two agents that both finished."""
    t = await started(env, agents)
    await t.beat(0, "finished", ONE, exit_code=0)
    await t.beat(1, "finished", TWO, exit_code=0)
    assert (await env.http.get(f"/tests/{t.id}")).json()["state"] == "finished"
    await env.ctl.flush()
    return t


def cid(t: Launched, i: int) -> str:
    return str(t.commands[i]["container_id"])


# --- labels asked for again after a restart ------------------------------------------------------


# After a restart the server asks for every label of the containers of tests under way.


async def test_asked_until_they_come_then_exact(tmp_path: Path) -> None:
    async with serving(tmp_path / "d", labels_save_interval=3600.0) as env:
        done = await ended(env)  # a test that ends before the restart: its labels are final
        t = await started(env, done.agents)
        await t.beat(0, "running", ONE)
        await t.beat(1, "running", TWO)
        # Not asked while the server holds every report since its start.
        assert (await t.beat(0, "running"))["labels_wanted"] == []
        test_id, agents, commands = t.id, t.agents, t.commands
    async with serving(tmp_path / "d") as env:
        t = Launched(env, test_id, agents, commands)
        # The first heartbeat after the restart carries what changed since the agent's last answered
        # one: not the answer to an ask (the agent had seen none), so the ask goes on.
        grown = [*ONE, *samples("search", 9.0, [70, 71])]
        labels, errors = cumulative([r for r in grown if r[0] == "search"])
        first = await t.beat(0, "running", labels=labels, errors=errors)
        assert first["labels_wanted"] == [cid(t, 0)] and first["stop"] == []
        assert (await t.beat(0, "running"))["labels_wanted"] == [cid(t, 0)]
        # The answer: every label; then no more asks.
        assert (await t.beat(0, "running", grown))["labels_wanted"] == []
        assert (await t.beat(0, "running"))["labels_wanted"] == []
        got = await t.labels()
        assert got == [by_hand(grown + TWO, x["label"]) for x in got]
        # An agent that never answers (older than the field) is asked a bounded number of times.
        asked = [(await t.beat(1, "running"))["labels_wanted"] for _ in range(WANTED_ASKS + 2)]
        assert asked == [[cid(t, 1)]] * WANTED_ASKS + [[], []]
        # The ended test's containers were never asked for, and a new test's are not.
        assert not {c["container_id"] for c in done.commands} & set().union(*map(set, asked))
        new = (await env.http.post("/tests", json=spec(containers=2))).json()
        for agent_id, token in agents:
            for cmd in await poll(env, agent_id, token):
                await ack(env, agent_id, token, cmd["id"])
                r = await env.beat(agent_id, token, containers=[report(cmd, "running")])
                assert r["labels_wanted"] == [], new["id"]


async def test_an_ending_test_stops_the_asks(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await Launched.start(env)
        await t.beat(0, "running", ONE)
        test_id, agents, commands = t.id, t.agents, t.commands
    async with serving(tmp_path / "d") as env:
        t = Launched(env, test_id, agents, commands)
        assert (await t.beat(0, "running"))["labels_wanted"] == [cid(t, 0)]
        await t.beat(0, "finished", ONE, exit_code=0)
        await t.beat(1, "finished", exit_code=0)
        assert (await env.http.get(f"/tests/{t.id}")).json()["state"] == "finished"
        assert (await t.beat(0, "finished"))["labels_wanted"] == []
        assert (await t.beat(1, "finished"))["labels_wanted"] == []


async def test_the_fast_path_answers_an_ask_as_fastapi_does(tmp_path: Path) -> None:
    """Both paths, byte for byte, on two servers restarted with a test under way."""

    async def world(side: Side) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{side.port}/api/v1", timeout=10) as api:
            api.headers["Authorization"] = "Bearer fastpath-admin"
            p = (await api.post("/providers", json={"name": "local"})).json()
            r = await api.post("/agents/register", json={"name": "h", "location": "paris"},
                               headers=bearer(p["token"]))  # fmt: skip
            side.ids["A"], side.tokens["agent"] = r.json()["agent_id"], r.json()["agent_token"]
            r = await api.post(
                f"/agents/{side.ids['A']}/heartbeat", content=fast_beat(), headers=as_kind(side, "agent")
            )
            assert r.status_code == 200, r.text
            test = (await api.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local",
                                                   "containers": 1})).json()  # fmt: skip
            side.ids["C"], side.ids["T"] = test["containers"][0]["id"], test["id"]

    tokens: dict[str, dict[str, Any]] = {}
    for fast in (True, False):
        async with serving_uvicorn(tmp_path / str(fast), fast) as side:
            await world(side)
            tokens[str(fast)] = {"tokens": side.tokens, "ids": side.ids}
    container = {"container_id": "{C}", "test_id": "{T}", "state": "pending"}
    body = fast_beat(containers=[container])
    answers = []
    async with (
        serving_uvicorn(tmp_path / "True", True) as fast_side,
        serving_uvicorn(tmp_path / "False", False) as plain_side,
    ):
        for side, key in ((fast_side, "True"), (plain_side, "False")):
            side.tokens, side.ids = tokens[key]["tokens"], tokens[key]["ids"]
            raw = await exchange(side.port, request(side, "POST", "/api/v1/agents/{A}/heartbeat", body=body))
            answers.append(side.canonical(raw))
        assert fast_side.fast == (1, 0)
    assert answers[0] == answers[1]
    assert answers[0].endswith(
        b'{"ok":true,"stop":[],"labels_wanted":["<C>"],"monitors":null,"monitor_revision":null}'
    ), answers[0]


# --- a test stopped by an operator reads stopped -------------------------------------------------


async def test_stopped_by_an_operator_or_a_forced_agent_delete(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        done = await ended(env)
        assert (await env.http.get(f"/tests/{done.id}")).json()["stopped"] is False
        t = await started(env, done.agents)
        r = await env.http.post(f"/tests/{t.id}/stop")
        assert r.json()["stopped"] is False  # stopping: not ended yet
        await t.beat(0, "finished", exit_code=0)
        await t.beat(1, "finished", exit_code=0)
        got = (await env.http.get(f"/tests/{t.id}")).json()
        assert got["state"] == "finished" and got["stopped"] is True
        # A forced delete of the agent running a test's only container stops that test.
        (a, tok), = await fleet(env, "gen-3")  # fmt: skip
        for other in ("gen-1", "gen-2"):
            agent_id = next(x["id"] for x in (await env.http.get("/agents")).json() if x["name"] == other)
            assert (await env.http.delete(f"/agents/{agent_id}")).status_code == 204
        one = (await env.http.post("/tests", json=spec(containers=1))).json()
        (cmd,) = await poll(env, a, tok)
        await ack(env, a, tok, cmd["id"])
        await env.beat(a, tok, containers=[report(cmd, "running")])
        assert (await env.http.delete(f"/agents/{a}", params={"force": "true"})).status_code == 202
        await env.beat(a, tok, containers=[report(cmd, "finished", exit_code=0)])
        got = (await env.http.get(f"/tests/{one['id']}")).json()
        assert got["state"] == "finished" and got["stopped"] is True and "deletion of agent gen-3" in got["reason"]
        ids = (t.id, one["id"], done.id)
    async with serving(tmp_path / "d") as env:
        assert [(await env.http.get(f"/tests/{i}")).json()["stopped"] for i in ids] == [True, True, False]


# --- the timeline kept ---------------------------------------------------------------------------


# The whole test's series: bounded, merged correctly, the same after a restart.


def test_a_24_hour_test_is_bounded_and_merged_correctly() -> None:
    rng = random.Random(7)
    line = Timeline()
    raw = []
    errors = 0
    for s in range(24 * 3600):
        errors += rng.random() < 0.01
        p95 = None if s % 13 == 0 else rng.uniform(10, 900)
        point = (1_700_000_000.0 + s, rng.uniform(50, 150), 20 + s / 1000, errors, rng.randint(1, 100))
        extra = (rng.uniform(0, 3), p95, rng.uniform(1e3, 1e6), rng.uniform(1e2, 1e4))
        raw.append((*point, *extra))
        line.add(*point, *extra)
    points = line.points()
    assert len(points) <= 5000 and line.fine_count == 3601 and line.width == 60.0
    # The last hour as it came, one point a second.
    assert [p[:9] for p in points[-3601:]] == raw[-3601:]
    # Older points: one per minute, each standing for the points of its minute.
    coarse = points[:-3601]
    assert 23 * 60 <= len(coarse) <= 23 * 60 + 1  # whole minutes, the first one partial
    assert sum(p[9] for p in coarse) + 3601 == len(raw)
    at = 0
    for ts, rate, avg, errs, active, error_rate, p95, rx, tx, n in coarse:
        n = int(n)
        mine = raw[at : at + n]
        at += n
        assert ts == mine[-1][0] and avg == mine[-1][2] and errs == mine[-1][3]
        assert active == max(p[4] for p in mine)
        assert rate == pytest.approx(sum(p[1] for p in mine) / n)
        assert error_rate == pytest.approx(sum(p[5] for p in mine) / n)
        assert rx == pytest.approx(sum(p[7] for p in mine) / n) and tx == pytest.approx(sum(p[8] for p in mine) / n)
        # The bucket's 95th: the highest of its points' (an upper bound), None only when none had one.
        known = [p[6] for p in mine if p[6] is not None]
        assert p95 == (max(known) if known else None)
        assert len({int(p[0] // 60) for p in mine}) == 1  # one minute
    # Samples (rate x seconds) and errors over the whole test are kept.
    assert sum(p[1] * p[9] for p in points) == pytest.approx(sum(p[1] for p in raw))
    assert sum(p[5] * p[9] for p in points) == pytest.approx(sum(p[5] for p in raw))
    assert points[-1][3] == errors
    # A longer test stays bounded: older minutes merged by two, four...
    for s in range(24 * 3600, 60 * 3600, 1):
        line.add(1_700_000_000.0 + s, 100.0, 30.0, errors, 5)
    assert len(line) <= 5000 and line.width > 60.0
    assert sum(p[9] for p in line.points()) == 60 * 3600


def test_packed_and_unpacked_alike() -> None:
    line = Timeline(fine_span=10, width=5, max_points=40)
    for s in range(200):
        line.add(1000.0 + s * 0.7, s * 1.1, s / 3, s // 4, s % 9, s / 7, None if s % 3 else s * 2.5, s * 10.0, s * 1.5)
    back = Timeline.unpack(*line.pack(), fine_span=10, max_points=40)
    assert back.points() == line.points() and back.width == line.width and len(back) <= 40


def test_a_timeline_stored_by_an_older_server_reads_as_it_was() -> None:
    """Six doubles a point, no header (before per-interval figures): read with those left empty."""
    old = array("d", [1000.0, 5.0, 12.5, 3.0, 7.0, 60.0, 1060.0, 6.0, 13.0, 4.0, 8.0, 1.0]).tobytes()
    back = Timeline.unpack(60.0, 1, old)
    assert back.points() == [
        (1000.0, 5.0, 12.5, 3.0, 7.0, 0.0, None, 0.0, 0.0, 60.0),
        (1060.0, 6.0, 13.0, 4.0, 8.0, 0.0, None, 0.0, 0.0, 1.0),
    ]
    assert back.coarse == 1


def test_label_and_generator_timelines_24_hours_200_labels_bounded() -> None:
    """The bound stated in domain/series.py: each label <= 1,000 points (64 bytes each), whatever
    the length; samples (rate x seconds) kept and the interval's average weighted by samples."""
    line = LabelTimeline()
    gen = GeneratorTimeline()
    total = weighted = 0.0
    for s in range(24 * 3600):
        rate = float(s % 5)  # some seconds without a sample
        line.add_raw(
            (1_700_000_000.0 + s, rate, rate / 10, 100.0 + s % 3, math.nan if not rate else 150.0, 1e4, 1e3, 1)
        )
        gen.add_raw((1_700_000_000.0 + s, 50.0 + s % 2, 30.0, 1))
        total += rate
        weighted += rate * (100.0 + s % 3)
    assert len(line) <= LABEL_MAX_POINTS and len(gen) <= LABEL_MAX_POINTS
    assert len(line.pack()[2]) <= 16 + LABEL_MAX_POINTS * 64
    pts = line.points()
    assert sum(p[1] * p[7] for p in pts) == pytest.approx(total)
    assert sum(p[1] * p[7] * p[3] for p in pts) == pytest.approx(weighted)
    assert {p[4] for p in pts} == {None, 150.0} or {p[4] for p in pts} == {150.0}
    assert sum(p[1] * p[3] for p in gen.points()) == pytest.approx(sum(50.0 + s % 2 for s in range(24 * 3600)))


def test_thinned_for_a_chart_keeps_samples_and_the_highest_95th() -> None:
    """What the report draws of a long timeline: <= N points, each run merged as buckets are."""
    rng = random.Random(11)
    line = LabelTimeline()
    raw = []
    for s in range(5000):
        rate = rng.choice([0.0, rng.uniform(1, 50)])
        p95 = math.nan if not rate else rng.uniform(1, 900)
        point = (1_700_000_000.0 + s, rate, rng.uniform(0, 2), rng.uniform(1, 300), p95, rng.uniform(0, 1e5), 10.0, 1)
        raw.append(point)
        line.add_raw(point)
    thin = line.thinned(300)
    assert len(thin) <= 300 and thin[-1][0] == raw[-1][0]
    full = line.points()
    for i, field in ((1, "rate"), (2, "errors/s"), (5, "received")):
        assert sum(p[i] * p[7] for p in thin) == pytest.approx(sum(p[i] * p[7] for p in full)), field
    # The samples' average kept (weighted by samples), the highest 95th kept.
    assert sum(p[1] * p[7] * p[3] for p in thin) == pytest.approx(sum(p[1] * p[7] * p[3] for p in full))
    assert max(p[4] for p in thin if p[4] is not None) == max(p[4] for p in full if p[4] is not None)
    # One pass per run equals merging its points one after the other.
    group = [tuple(raw[i]) for i in range(7)]
    one, pairwise = LabelTimeline.merge_group(group), group[0]
    for q in group[1:]:
        pairwise = LabelTimeline.merge(pairwise, q)
    assert one == pytest.approx(pairwise, nan_ok=True)


async def test_the_series_of_an_ended_and_a_running_test_after_a_restart(tmp_path: Path) -> None:
    async with serving(tmp_path / "d", series_max_points=300, series_fine_span=100.0) as env:
        done = await ended(env)
        running = await started(env, done.agents)
        for test_id in (done.id, running.id):  # two hours of points, as the tick adds them
            for s in range(7200):
                env.ctl.series.add(test_id, 1_700_000_000.0 + s, 10.0 + s % 7, 12.5, s // 100, s % 11)
        await env.ctl.flush()
        want = {i: (await env.http.get(f"/tests/{i}/series")).json() for i in (done.id, running.id)}
        assert all(0 < len(w["points"]) <= 300 for w in want.values())
        # Once stored, an ended test's series leaves memory: read from the store, the same.
        assert done.id not in env.ctl.series and running.id in env.ctl.series
        assert (await env.http.get(f"/tests/{done.id}/series")).json() == want[done.id]
    async with serving(tmp_path / "d", series_max_points=300, series_fine_span=100.0) as env:
        for test_id, w in want.items():
            assert (await env.http.get(f"/tests/{test_id}/series")).json() == w
        # The running one goes on where it was.
        env.ctl.series.add(running.id, 1_700_009_000.0, 1.0, 1.0, 1, 1)
        assert (await env.http.get(f"/tests/{running.id}/series")).json()["points"][-1]["ts"] == 1_700_009_000.0


def interval_of(rows: list[Sample], label: str | None, dt: float) -> dict[str, Any]:
    """What a point of the series must say for ``rows`` (one interval's samples, every container):
    of ``label``, or of every label (None)."""
    mine = [r for r in rows if label is None or r[0] == label]
    if not mine:
        return {"rate": 0.0, "error_rate": 0.0, "avg_ms": 0.0, "p95_ms": None, "received_bps": 0.0, "sent_bps": 0.0}
    times = sorted(r[2] for r in mine)
    p95 = rt_bucket_ms(rt_bucket(times[max(1, math.ceil(0.95 * len(times))) - 1]))
    return {
        "rate": len(mine) / dt, "error_rate": sum(1 for r in mine if not r[3]) / dt,
        "avg_ms": sum(times) / len(times), "p95_ms": p95,
        "received_bps": sum(r[6] for r in mine) / dt, "sent_bps": sum(r[7] for r in mine) / dt,
    }  # fmt: skip


def same(point: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        assert point[key] == (pytest.approx(value) if value is not None else None), (key, point, want)


async def test_each_label_over_time_exact_over_containers_kept_after_the_end_and_a_restart(tmp_path: Path) -> None:
    """Two containers report cumulative labels; each point holds what happened since the previous
    one, per label and for the whole test, exact over the containers (as computed from the samples)."""
    async with serving(tmp_path / "d") as env:
        t = await started(env)
        rec = env.ctl.get_test(t.id)
        halves = [(ONE[:9], TWO[:11]), (ONE, TWO)]
        at = time.time() - 10  # two points 2 s apart, then the end's
        for step, (one, two) in enumerate(halves):
            for i, (rows, cpu) in enumerate(((one, 30.0 + step), (two, 60.0 + step))):
                agent_id, token = t.agents[i]
                extra = dict(zip(("labels", "errors"), cumulative(rows), strict=True))
                await env.beat(
                    agent_id, token, cpu=cpu, mem=40.0 + i, containers=[report(t.commands[i], "running", **extra)]
                )
            series_domain.sample(env.ctl, rec, env.ctl.containers_of(rec), at + 2 * step)
        first = ONE[:9] + TWO[:11]
        second = [r for r in ONE + TWO if r not in first]
        got = (await env.http.get(f"/tests/{t.id}/series", params={"labels": "true", "generators": "true"})).json()
        names = sorted({r[0] for r in ONE + TWO})
        assert [x["label"] for x in got["labels"]] == names
        for x in got["labels"]:  # a label's points start with its first samples
            if any(r[0] == x["label"] for r in first):
                assert [p["ts"] for p in x["points"]] == [at, at + 2]
                same(x["points"][0], interval_of(first, x["label"], 1.0))  # the first point: over 1 s
            else:
                assert [p["ts"] for p in x["points"]] == [at + 2]
            same(x["points"][-1], interval_of(second, x["label"], 2.0))
        # The test's own points: 95th and bytes/s over every label of the interval.
        for point, rows, dt in zip(got["points"], (first, second), (1.0, 2.0), strict=True):
            want = interval_of(rows, None, dt)
            same(point, {k: want[k] for k in ("p95_ms", "received_bps", "sent_bps")})
        # Each generator's CPU and memory at each point (its last host sample then).
        gens = {
            g["agent_name"]: [(p["cpu_percent"], p["memory_percent"]) for p in g["points"]] for g in got["generators"]
        }
        assert gens == {"gen-1": [(30.0, 40.0), (31.0, 40.0)], "gen-2": [(60.0, 41.0), (61.0, 41.0)]}
        # One label alone; an unknown one has none; without asking, none.
        one = (await env.http.get(f"/tests/{t.id}/series", params={"label": "login"})).json()
        assert [x["label"] for x in one["labels"]] == ["login"] and one["labels"][0] == got["labels"][
            names.index("login")
        ]
        assert (await env.http.get(f"/tests/{t.id}/series", params={"label": "nope"})).json()["labels"] == []
        plain = (await env.http.get(f"/tests/{t.id}/series")).json()
        assert plain["labels"] == [] and plain["generators"] == [] and plain["points"] == got["points"]
        # The client asks the same (its older call, without arguments, unchanged).
        async with Client("http://test", ADMIN, transport=env.http._transport) as client:
            assert (await client.test_series(t.id)).model_dump(mode="json") == plain
            both = await client.test_series(t.id, labels=True, generators=True)
            assert both.model_dump(mode="json") == got
            assert (await client.test_series(t.id, label="login")).model_dump(mode="json") == one
        for bad in ({"labels": "maybe"}, {"generators": "2x"}, {"label": ""}):
            r = await env.http.get(f"/tests/{t.id}/series", params=bad)
            assert r.status_code == 422, (bad, r.text)
        assert (await env.http.get("/tests/nope/series", params={"labels": "true"})).status_code == 404
        # Ended and stored: read from the store, the same.
        await t.beat(0, "finished", ONE, exit_code=0)
        await t.beat(1, "finished", TWO, exit_code=0)
        await env.ctl.flush()
        assert t.id not in env.ctl.timelines and len(stored(env, "label_series", "WHERE test_id = ?", t.id)) == 4
        again = (await env.http.get(f"/tests/{t.id}/series", params={"labels": "true", "generators": "true"})).json()
        # One more point of the test as it ended; none of a label (nothing new came), or one of none
        # when its last was 10 s ago (a slow machine).
        assert again["generators"] == got["generators"] and again["points"][:-1] == got["points"]
        for before, now in zip(got["labels"], again["labels"], strict=True):
            n = len(before["points"])
            assert now["points"][:n] == before["points"] and all(p["rate"] == 0.0 for p in now["points"][n:])
        got = again
    async with serving(tmp_path / "d") as env:
        after = (await env.http.get(f"/tests/{t.id}/series", params={"labels": "true", "generators": "true"})).json()
        assert after == got


async def test_a_label_gets_a_point_when_new_figures_of_it_come_or_after_10_s_without(tmp_path: Path) -> None:
    """An agent reports a label once a heartbeat: its point covers the seconds since its previous
    one (no run of empty seconds then one five times too high); idle, a point of none each 10 s."""
    async with serving(tmp_path / "d") as env:
        t = await started(env)
        rec = env.ctl.get_test(t.id)
        at = time.time() - 60

        def tick(s: float) -> None:
            series_domain.sample(env.ctl, rec, env.ctl.containers_of(rec), at + s)

        await t.beat(0, "running", ONE[:5])  # five "home" samples
        tick(0)
        for s in range(1, 5):  # four seconds without a heartbeat
            tick(s)
        await t.beat(0, "running", ONE[:10])  # five more, in the next heartbeat
        tick(5)
        for s in range(6, 17):
            tick(s)
        got = (await env.http.get(f"/tests/{t.id}/series", params={"label": "home"})).json()["labels"][0]["points"]
        assert [(p["ts"] - at, p["rate"]) for p in got] == [(0, 5.0), (5, 1.0), (15, 0.0)]
        assert len((await env.http.get(f"/tests/{t.id}/series")).json()["points"]) == 17  # the test's: every second


async def test_a_running_test_goes_on_after_a_restart_without_counting_the_past_again(tmp_path: Path) -> None:
    async with serving(tmp_path / "d", labels_save_interval=0.0) as env:
        t = await started(env)
        rec = env.ctl.get_test(t.id)
        await t.beat(0, "running", ONE[:9])
        series_domain.sample(env.ctl, rec, env.ctl.containers_of(rec), 1000.0)
        await env.ctl.flush()
        before = (await env.http.get(f"/tests/{t.id}/series", params={"labels": "true"})).json()["labels"]
    async with serving(tmp_path / "d", labels_save_interval=0.0) as env:
        rec = env.ctl.get_test(t.id)
        series_domain.sample(env.ctl, rec, env.ctl.containers_of(rec), 1001.0)  # notes the figures taken back
        t.env = env
        await t.beat(0, "running", ONE)
        series_domain.sample(env.ctl, rec, env.ctl.containers_of(rec), 1003.0)
        await env.ctl.flush()  # the stored timelines are taken back, what came since after them
        after = (await env.http.get(f"/tests/{t.id}/series", params={"labels": "true"})).json()["labels"]
        assert [x["label"] for x in before] == ["home"]
        assert [x["label"] for x in after] == sorted({r[0] for r in ONE})
        for x in after:  # home goes on from its stored point; the others start now
            kept = before[0]["points"] if x["label"] == "home" else []
            assert x["points"][:-1] == kept and x["points"][-1]["ts"] == 1003.0
            same(x["points"][-1], interval_of(ONE[9:], x["label"], 2.0))


def test_a_killed_server_keeps_the_series_it_had_stored(tmp_path: Path) -> None:
    """A real server, SIGKILLed mid-test: the points stored every ``--labels-save-interval`` come back."""
    server = ServerProcess(tmp_path / "server", "--labels-save-interval", "0.5").start()
    try:
        api = server.client()
        token = create_provider(api, "local")["token"]
        host = {"ts": time.time(), "cpu_percent": 5.0, "memory_percent": 20.0, "memory_total": 8 * 1024**3}
        r = api.post("/agents/register", json={"name": "gen-1", "location": "paris"}, headers=bearer(token))
        agent_id, agent_token = r.json()["agent_id"], r.json()["agent_token"]
        docker = {"available": True, "version": "20.10"}
        api.post(f"/agents/{agent_id}/heartbeat", json={"host": host, "docker": docker}, headers=bearer(agent_token))
        test = api.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 1}).json()
        (cmd,) = api.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=bearer(agent_token)).json()

        def beat(samples: int) -> None:
            body = {"host": host, "containers": [report(cmd, "running", figures=figures(samples, 50.0, 12.0))]}
            api.post(f"/agents/{agent_id}/heartbeat", json=body, headers=bearer(agent_token)).raise_for_status()

        def points() -> list[dict[str, Any]]:
            beat(100)
            return list(api.get(f"/tests/{test['id']}/series").json()["points"])

        before = wait_until(lambda: len(p := points()) >= 3 and p, timeout=15, what="3 points of the series")

        def kept() -> int:
            with contextlib.closing(sqlite3.connect(f"file:{server.data_dir / 'octotui.db'}?mode=ro", uri=True)) as db:
                row = db.execute("SELECT length(points) FROM test_series WHERE test_id = ?", (test["id"],)).fetchone()
            return 0 if row is None else (int(row[0]) - 16) // 80  # a header of two doubles, ten a point

        wait_until(lambda: kept() >= len(before), timeout=10, what="the series stored")
        server.restart(signal.SIGKILL)
        api = server.client()
        after = api.get(f"/tests/{test['id']}/series").json()["points"]
        assert after[: len(before)] == before
    finally:
        server.stop()


# --- JTL uploads and the merged JTL --------------------------------------------------------------


# ``PUT /agents/{agent}/containers/{container}/jtl``: its agent only, once ended, checked, streamed.


async def test_stored_as_sent_and_replaced_when_sent_again(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await ended(env)
        body = gzip.compress(jtl_file(0, 100))
        r = await upload(env, t.agents[0], cid(t, 0), body)
        assert r.status_code == 204, r.text
        path = env.settings.data_dir / "results" / t.id / f"{cid(t, 0)}.jtl.gz"
        assert path.read_bytes() == body
        (row,) = stored(env, "container_jtl")
        assert row[:5] == (cid(t, 0), t.id, len(body), sha(body), HEADER.decode()) and row[6] is None
        again = gzip.compress(jtl_file(0, 150))
        assert (await upload(env, t.agents[0], cid(t, 0), again)).status_code == 204
        assert path.read_bytes() == again and stored(env, "container_jtl")[0][2] == len(again)
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


async def test_refusals_change_nothing(tmp_path: Path) -> None:
    async with serving(tmp_path / "d", max_jtl_bytes=10_000) as env:
        t = await ended(env)
        running = await started(env, t.agents)
        body = gzip.compress(jtl_file(0, 50))
        good = await upload(env, t.agents[0], cid(t, 0), body)
        assert good.status_code == 204
        folder = env.settings.data_dir / "results" / t.id
        before = (
            stored(env, "container_jtl"),
            sorted(folder.iterdir()),
            (folder / f"{cid(t, 0)}.jtl.gz").read_bytes(),
        )
        big = random.Random(1).randbytes(20_000)
        huge = gzip.compress(big, compresslevel=0)
        cases: list[tuple[str, int, str, Any]] = [
            ("another agent's token", 403, "", upload(env, (t.agents[0][0], t.agents[1][1]), cid(t, 0), body)),
            ("an admin token", 403, "", upload(env, (t.agents[0][0], ADMIN), cid(t, 0), body)),
            ("another agent's container", 409, "ran on agent", upload(env, t.agents[1], cid(t, 0), body)),
            ("a running container", 409, "once it ended", upload(env, running.agents[0], cid(running, 0), body)),
            ("an unknown container", 404, "c-000000000000", upload(env, t.agents[0], "c-000000000000", body)),
            ("no checksum", 422, "X-Checksum-Sha256", upload(env, t.agents[0], cid(t, 0), body, None)),
            ("a malformed checksum", 422, "64 hex", upload(env, t.agents[0], cid(t, 0), body, "abc")),
            ("a wrong checksum", 422, "checksum mismatch", upload(env, t.agents[0], cid(t, 0), body, "0" * 64)),
            ("not gzip", 422, "not gzip", upload(env, t.agents[0], cid(t, 0), jtl_file(0, 5))),
            ("an empty body", 422, "empty", upload(env, t.agents[0], cid(t, 0), b"")),
            ("XML", 422, "XML", upload(env, t.agents[0], cid(t, 0), gzip.compress(b"<?xml?>\n<testResults>"))),
            ("over the limit, declared", 413, "10000 bytes", upload(env, t.agents[0], cid(t, 0), huge)),
        ]
        for what, status, words, call in cases:
            r = await call
            assert r.status_code == status, (what, r.text)
            assert words in r.json()["detail"], (what, r.json())
            assert (stored(env, "container_jtl"), sorted(folder.iterdir()),
                    (folder / f"{cid(t, 0)}.jtl.gz").read_bytes()) == before, what  # fmt: skip

        # Over the limit without a declared size (chunked): counted while streamed, refused, discarded.
        async def chunks() -> Any:
            for i in range(0, len(huge), 4096):
                yield huge[i : i + 4096]

        agent_id, token = t.agents[0]
        r = await env.http.put(
            f"/agents/{agent_id}/containers/{cid(t, 0)}/jtl", content=chunks(),
            headers={**bearer(token), "X-Checksum-Sha256": sha(huge)},
        )  # fmt: skip
        assert r.status_code == 413 and "10000 bytes" in r.json()["detail"], r.text
        assert (stored(env, "container_jtl"), sorted(folder.iterdir())) == before[:2]


async def test_a_streamed_upload_passes_the_json_body_limit(tmp_path: Path) -> None:
    async with serving(tmp_path / "d", max_body_bytes=20_000) as env:
        t = await ended(env)
        body = gzip.compress(random.Random(2).randbytes(200_000), compresslevel=0)
        body = gzip.compress(jtl_file(0, 10) + body.hex().encode(), compresslevel=0)
        assert len(body) > 20_000
        r = await upload(env, t.agents[0], cid(t, 0), body)
        assert r.status_code == 204, r.text
        # ... and a JSON route still has its own limit.
        r = await env.http.post(
            "/tests", content=b"{" + b" " * 30_000 + b"}", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 413


# ``GET /tests/{id}/export/jtl``: header once, container by container, as JMeter wrote them.


async def test_merged_in_container_order_with_the_header_once(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await ended(env)
        one = jtl_file(0, 300)
        # The second container's JTL: two gzip members (appended), its last row without a newline.
        two = HEADER + b"\n" + jtl_rows(1, 200)
        two_gz = gzip.compress(two[:5000]) + gzip.compress(two[5000:-1])
        assert (await upload(env, t.agents[1], cid(t, 1), two_gz)).status_code == 204
        assert (await upload(env, t.agents[0], cid(t, 0), gzip.compress(one))).status_code == 204
        r = await env.http.get(f"/tests/{t.id}/export/jtl")
        assert r.status_code == 200, r.text
        assert r.content == one + jtl_rows(1, 200)[:-1] + b"\n"
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["x-octotui-order"] == "container" and "x-octotui-missing" not in r.headers
        assert r.headers["content-disposition"] == f'attachment; filename="{t.id}.jtl"'
        assert r.content.count(b"\n") == 1 + 300 + 200
        reader = await env.ctl.add_operator_token("read-only", "watcher")
        assert (await env.http.get(f"/tests/{t.id}/export/jtl", headers=bearer(reader))).content == r.content


async def test_missing_running_unknown_and_mismatched(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        running = await Launched.start(env)
        r = await env.http.get(f"/tests/{running.id}/export/jtl")
        assert r.status_code == 409 and r.json()["detail"] == "still running: the merged JTL is made once it ended"
        assert (await env.http.get("/tests/t-000000000000/export/jtl")).status_code == 404
        t = await ended(env, running.agents)
        r = await env.http.get(f"/tests/{t.id}/export/jtl")
        assert r.status_code == 409 and cid(t, 0) in r.json()["detail"] and cid(t, 1) in r.json()["detail"]
        assert (await upload(env, t.agents[1], cid(t, 1), gzip.compress(jtl_file(1, 10)))).status_code == 204
        r = await env.http.get(f"/tests/{t.id}/export/jtl")
        assert r.status_code == 200 and r.content == jtl_file(1, 10)
        assert r.headers["x-octotui-missing"] == cid(t, 0)
        other = b"timeStamp,elapsed,label\n1,2,home\n"
        assert (await upload(env, t.agents[0], cid(t, 0), gzip.compress(other))).status_code == 204
        r = await env.http.get(f"/tests/{t.id}/export/jtl")
        assert r.status_code == 409 and "different columns" in r.json()["detail"], r.text
        assert cid(t, 0) in r.json()["detail"] and cid(t, 1) in r.json()["detail"]


async def test_retention_deletes_old_jtls_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="octotui.server")
    # 0.0001 days: 8.6 s after the end. Pruned in the periodic work, every 0.1 s.
    async with serving(tmp_path / "d", jtl_retention_days=0.0001, jtl_prune_interval=0.1) as env:
        t = await ended(env)
        keep = await ended(env, t.agents)
        for test in (t, keep):
            for i in (0, 1):
                assert (
                    await upload(env, test.agents[i], cid(test, i), gzip.compress(jtl_file(i, 5)))
                ).status_code == 204
        # The first test ended long ago (as the store says), the second just now.
        env.ctl.tests[t.id].ended_at = time.time() - 3600
        env.ctl.unsaved.tests.add(t.id)
        folder = env.settings.data_dir / "results"

        async def pruned() -> bool:
            return not any((folder / t.id).iterdir())

        await wait_until_async(pruned, timeout=10, what="the old test's JTLs deleted")
        assert len(list((folder / keep.id).iterdir())) == 2
        r = await env.http.get(f"/tests/{t.id}/export/jtl")
        assert r.status_code == 410 and "--jtl-retention" in r.json()["detail"]
        assert (await env.http.get(f"/tests/{keep.id}/export/jtl")).status_code == 200
        assert any("JTL retention" in m and t.id in m for m in caplog.messages)


async def test_none_kept_for_ever_with_zero(tmp_path: Path) -> None:
    async with serving(tmp_path / "d", jtl_retention_days=0, jtl_prune_interval=0.05) as env:
        t = await ended(env)
        assert (await upload(env, t.agents[0], cid(t, 0), gzip.compress(jtl_file(0, 5)))).status_code == 204
        env.ctl.tests[t.id].ended_at = 1.0
        env.ctl.unsaved.tests.add(t.id)
        assert await jtl_domain.prune(env.ctl) == 0
        assert (await env.http.get(f"/tests/{t.id}/export/jtl")).status_code == 200


# --- deleting an ended test, reading a plan back -------------------------------------------------


async def test_delete_an_ended_test_and_everything_kept_for_it(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        feed = (await env.http.get("/changes")).json()
        t = await Launched.start(env)
        await t.beat(0, "running", ONE)
        before = await env.snapshot()
        r = await env.http.delete(f"/tests/{t.id}")
        assert r.status_code == 409 and "stop it first" in r.json()["detail"]
        assert await env.snapshot() == before
        assert (await env.http.delete("/tests/t-000000000000")).status_code == 404
        # Ended, with labels, a series, JTLs and the idempotency key that made it.
        key = "delete-me-0001"
        keyed = (await env.http.post("/tests", json=spec(containers=1), headers={"Idempotency-Key": key})).json()
        rec = env.ctl.get_test(t.id)
        series_domain.sample(env.ctl, rec, env.ctl.containers_of(rec), time.time() - 5)  # a point while it runs
        await t.beat(0, "finished", ONE, exit_code=0)
        await t.beat(1, "finished", TWO, exit_code=0)
        env.ctl.series.add(t.id, 1.0, 2.0, 3.0, 4, 5)
        for i in (0, 1):
            assert (await upload(env, t.agents[i], cid(t, i), gzip.compress(jtl_file(i, 5)))).status_code == 204
        await env.ctl.flush(all_labels=True)
        assert stored(env, "test_series", "WHERE test_id = ?", t.id) and stored(env, "container_labels")
        kept = ("label_series", "generator_series")
        assert all(stored(env, table, "WHERE test_id = ?", t.id) for table in kept)
        r = await env.http.delete(f"/tests/{t.id}")
        assert r.status_code == 204, r.text
        await env.ctl.flush(all_labels=True)  # the label and generator timelines go at the next full save
        assert not any(stored(env, table, "WHERE test_id = ?", t.id) for table in kept)
        for path in ("", "/labels", "/series", "/plan", "/export/jtl"):
            assert (await env.http.get(f"/tests/{t.id}{path}")).status_code == 404, path
        assert [x["id"] for x in (await env.http.get("/tests")).json()] == [keyed["id"]]
        for table in ("tests", "containers", "container_labels", "test_series", "container_jtl", "commands"):
            assert stored(env, table, "WHERE test_id = ?" if table != "tests" else "WHERE id = ?", t.id) == [], table
        assert not (env.settings.data_dir / "results" / t.id).exists()
        changes = (await env.http.get("/changes", params={"since": feed["revision"], "epoch": feed["epoch"]})).json()
        assert t.id in changes["removed_tests"]
        audit = (await env.http.get("/audit")).json()
        assert audit[0]["action"] == "test.delete" and audit[0]["target"] == t.id
        # An agent still reporting a deleted test's ended container is left alone.
        assert (await t.beat(0, "finished"))["stop"] == []
        # The idempotency key of a deleted test is forgotten with it.
        # (stopped before its launch was handed out: it ends at once)
        assert (await env.http.post(f"/tests/{keyed['id']}/stop")).json()["state"] == "finished"
        assert (await env.http.delete(f"/tests/{keyed['id']}")).status_code == 204
        assert stored(env, "idempotency") == []
        again = await env.http.post("/tests", json=spec(containers=1), headers={"Idempotency-Key": key})
        assert again.status_code == 201 and again.json()["id"] != keyed["id"]
        test_id = t.id
    async with serving(tmp_path / "d") as env:
        assert (await env.http.get(f"/tests/{test_id}")).status_code == 404


async def test_the_plan_is_read_back(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        await fleet(env, "gen-1")
        plan = PLAN.replace('testname="t"', 'testname="caf\u00e9 &amp; co"')
        test = (await env.http.post("/tests", json=spec(containers=1, plan=plan))).json()
        r = await env.http.get(f"/tests/{test['id']}/plan")
        assert r.status_code == 200 and r.text == plan and r.headers["content-type"].startswith("application/xml")
        reader = await env.ctl.add_operator_token("read-only", "watcher")
        assert (await env.http.get(f"/tests/{test['id']}/plan", headers=bearer(reader))).text == plan
        assert (await env.http.get("/tests/t-000000000000/plan")).status_code == 404


def test_a_real_server_streams_uploads_under_its_limit_and_exports_them(tmp_path: Path) -> None:
    """``octotui server --max-jtl-bytes``: chunked and sized uploads through uvicorn, then the export."""
    server = ServerProcess(tmp_path / "server", "--max-jtl-bytes", "200000", "--jtl-retention", "0").start()
    try:
        api = server.client()
        token = create_provider(api, "local")["token"]
        host = {"ts": time.time(), "cpu_percent": 5.0, "memory_percent": 20.0, "memory_total": 8 * 1024**3}
        r = api.post("/agents/register", json={"name": "gen-1", "location": "paris"}, headers=bearer(token))
        agent_id, agent_token = r.json()["agent_id"], r.json()["agent_token"]
        beat = {"host": host, "docker": {"available": True, "version": "20.10"}}
        api.post(f"/agents/{agent_id}/heartbeat", json=beat, headers=bearer(agent_token)).raise_for_status()
        test = api.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 1}).json()
        (cmd,) = api.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=bearer(agent_token)).json()
        beat["containers"] = [report(cmd, "finished", exit_code=0)]
        api.post(f"/agents/{agent_id}/heartbeat", json=beat, headers=bearer(agent_token)).raise_for_status()
        path = f"/agents/{agent_id}/containers/{cmd['container_id']}/jtl"

        def put(body: bytes, chunked: bool) -> httpx.Response:
            content: Any = iter([body[i : i + 8192] for i in range(0, len(body), 8192)]) if chunked else body
            return api.put(path, content=content, headers={**bearer(agent_token), "X-Checksum-Sha256": sha(body)})

        small = gzip.compress(jtl_file(0, 3000))
        big = gzip.compress(random.Random(3).randbytes(300_000), compresslevel=0)
        for chunked in (True, False):
            r = put(big, chunked)
            assert r.status_code == 413 and "200000 bytes" in r.json()["detail"], (chunked, r.text)
            r = put(small, chunked)
            assert r.status_code == 204, (chunked, r.text)
        folder = server.data_dir / "results" / test["id"]
        assert [p.name for p in folder.iterdir()] == [f"{cmd['container_id']}.jtl.gz"]
        # An agent cut off mid-upload: the part received is thrown away, the stored JTL stays.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            head = (f"PUT /api/v1{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {agent_token}\r\n"
                    f"X-Checksum-Sha256: {sha(big)}\r\nContent-Length: {len(small) * 2}\r\n\r\n")  # fmt: skip
            sock.sendall(head.encode() + small[: len(small) // 2])
            wait_until(lambda: any(p.name.endswith(".part") for p in folder.iterdir()), timeout=10, what="a part")
        wait_until(lambda: len(list(folder.iterdir())) == 1, timeout=10, what="the part removed")
        assert "Traceback" not in server.log_path.read_text()
        with api.stream("GET", f"/tests/{test['id']}/export/jtl") as r:
            assert r.status_code == 200 and r.headers["x-octotui-order"] == "container"
            assert r.headers.get("transfer-encoding") == "chunked"
            assert b"".join(r.iter_bytes()) == jtl_file(0, 3000)
    finally:
        server.stop()
