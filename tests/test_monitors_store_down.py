"""A running test's monitors while PostgreSQL is stopped (``octotui/server/domain/alarms.py``
``of_test``): answered from memory (the series this server holds, the alarms raised and not cleared),
with one log line saying the stored history is not available now; an ended test's still 503."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.labelkit import serving
from tests.support.monitorkit import beat_monitors, create, fleet, mreport, prom_body, sample
from tests.support.postgres import Cluster
from tests.support.wire import ack, poll, report, spec

T0 = 1_700_000_000.0
LOAD = [{"metric": "node_load1", "severity": "critical", "above": 4}]


async def test_a_running_tests_monitors_answer_from_memory_while_postgresql_is_stopped(
    tmp_path: Path, dedicated_postgres: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = dedicated_postgres.dsn(dedicated_postgres.create_database())
    async with serving(tmp_path / "d", database=dsn) as env:
        agents = await fleet(env, "gen1")
        m = await create(env, prom_body(agents[0][0], thresholds=LOAD, mode="tests"))
        tests = []
        for _ in range(2):  # one ended, one running
            r = await env.http.post("/tests", json=spec(containers=1, monitors=[m["id"]]))
            assert r.status_code == 201, r.text
            (cmd,) = await poll(env, *agents[0])
            await ack(env, *agents[0], cmd["id"])
            await env.beat(*agents[0], containers=[report(cmd, "running")])
            tests.append((r.json()["id"], cmd))
        ended, running = tests[0][0], tests[1][0]
        await env.beat(*agents[0], containers=[report(tests[0][1], "finished", exit_code=0)])
        rev = (await beat_monitors(env, *agents[0]))["monitor_revision"]
        points = [(T0 + 5.0 * i, float(i)) for i in range(7)]  # 5 and 6 above 4: one critical alarm
        await beat_monitors(env, *agents[0], rev, [mreport(m["id"], *[sample(t, node_load1=v) for t, v in points])])
        before = (await env.http.get(f"/tests/{running}/monitors")).json()
        assert [a["severity"] for a in before["alarms"]] == ["critical"] and before["alarms"][0]["ended_at"] is None

        dedicated_postgres.stop()
        with caplog.at_level(logging.WARNING, logger="octotui.server"):
            for _ in range(3):  # a dashboard asking again and again
                got = await env.http.get(f"/tests/{running}/monitors")
                assert got.status_code == 200, got.text
                assert got.json() == before
            assert (await env.http.get(f"/tests/{ended}/monitors")).status_code == 503
        said = [r.getMessage() for r in caplog.records if "answered from memory" in r.getMessage()]
        assert len(said) == 1 and f"monitors of running test {running}" in said[0], said
        assert "stored history (alarms cleared and written, other replicas' samples) is not available now" in said[0]
        dedicated_postgres.start_same_port()
