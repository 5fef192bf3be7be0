"""Per-label figures and errors (issue 12, parts 1-2, server side) through the real app, with agents
speaking the wire protocol: merged exactly over containers, live and final, incremental reports,
repeated heartbeats, strays, the change feed, and the same answers after a server restart."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

from octotui.protocol import OTHER_LABEL, rt_bucket, rt_bucket_ms
from tests.support.admin import create_provider
from tests.support.labelkit import ONE, TWO, Launched, by_hand, cumulative, samples, serving
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until
from tests.support.wire import PLAN, bearer, report


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
