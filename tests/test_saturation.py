"""Saturated load generators (issue 15 part 3): agents speaking the wire protocol report host
samples of a hot machine while they run a test's containers; the server flags the agent
(``Agent.saturated``) and warns on the test, one line per agent kept up to date, kept after the
test ended and over a restart. And the agent's own counters: the TCP ones from /proc/net/snmp."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from agent.host import HostSampler, tcp_counters
from tests.support.app import Env
from tests.support.labelkit import serving
from tests.support.waiting import wait_until_async
from tests.support.wire import ack, bearer, fleet, poll, report, spec


def _sample(ts: float, cpu: float = 20.0, mem: float = 30.0, **extra: float) -> dict[str, Any]:
    return {"ts": ts, "cpu_percent": cpu, "cpu_per_core": [cpu, cpu], "memory_percent": mem,
            "memory_total": 8 * 1024**3, **extra}  # fmt: skip


async def _hot_beat(
    env: Env, agent: tuple[str, str], containers: list[dict[str, Any]], *samples: dict[str, Any]
) -> None:
    """One heartbeat carrying ``samples`` (oldest first; the last one is the host's latest)."""
    body = {"host": samples[-1], "samples": list(samples[:-1]), "docker": {"available": True, "version": "28"},
            "containers": containers}  # fmt: skip
    r = await env.http.post(f"/agents/{agent[0]}/heartbeat", json=body, headers=bearer(agent[1]))
    assert r.status_code == 200, r.text


async def _running(env: Env, *names: str) -> tuple[str, list[tuple[str, str]], list[dict[str, Any]]]:
    """A test with one running container on each of the agents ``names``."""
    agents = await fleet(env, *names)
    made = await env.http.post("/tests", json=spec(containers=len(names)))
    assert made.status_code == 201, made.text
    reports = []
    for agent_id, token in agents:
        (cmd,) = await poll(env, agent_id, token)
        await ack(env, agent_id, token, cmd["id"])
        reports.append(report(cmd, "running"))
        await env.beat(agent_id, token, containers=[reports[-1]])
    return made.json()["id"], agents, reports


async def _agent(env: Env, agent_id: str) -> dict[str, Any]:
    return (await env.http.get(f"/agents/{agent_id}")).json()  # type: ignore[no-any-return]


async def _warnings(env: Env, test_id: str) -> list[str]:
    return (await env.http.get(f"/tests/{test_id}")).json()["warnings"]  # type: ignore[no-any-return]


async def test_cpu_over_90_for_10_s_flags_the_agent_and_warns_on_the_test_kept_over_a_restart(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        test_id, (gen_a, gen_b), (rep_a, rep_b) = await _running(env, "gen-a", "gen-b")
        now = time.time() + 20  # after every sample the agent sent before (older ones are dropped)
        # gen-a hot for 5 s only: not saturated; gen-b at 97 % for 12 s: saturated
        await _hot_beat(env, gen_a, [rep_a], *[_sample(now - 4 + i, cpu=99.0) for i in range(5)])
        await _hot_beat(env, gen_b, [rep_b], *[_sample(now - 11 + i, cpu=97.0) for i in range(12)])

        async def flagged() -> Any:
            return (await _agent(env, gen_b[0]))["saturated"]

        assert await wait_until_async(flagged, what="gen-b flagged") == "CPU 97 % for 12 s"
        assert await _warnings(env, test_id) == ["results may be skewed: gen-b saturated for 12 s (CPU 97 %)"]
        assert (await _agent(env, gen_a[0]))["saturated"] is None
        # two seconds more of it, then its memory too: one line for gen-b, kept up to date
        await _hot_beat(env, gen_b, [rep_b], _sample(now + 1, cpu=98.0), _sample(now + 2, cpu=96.0, mem=95.0))

        async def updated() -> Any:
            return (await _warnings(env, test_id)) == [
                "results may be skewed: gen-b saturated for 14 s (CPU 98 %, memory 95 %)"
            ]

        await wait_until_async(updated, what="gen-b's line updated")
        assert (await _agent(env, gen_b[0]))["saturated"] == "CPU 96 % for 14 s; memory 95 %"
        # cool again: the agent is no longer saturated, the test keeps its warning
        await _hot_beat(env, gen_b, [rep_b], _sample(now + 3, cpu=40.0))

        async def cooled() -> bool:
            return (await _agent(env, gen_b[0]))["saturated"] is None

        await wait_until_async(cooled, what="gen-b no longer saturated")
        for agent, rep in ((gen_a, rep_a), (gen_b, rep_b)):
            await env.beat(*agent, containers=[{**rep, "state": "finished", "exit_code": 0}])
        t = (await env.http.get(f"/tests/{test_id}")).json()
        assert t["state"] == "finished"
        gen_b_line = "results may be skewed: gen-b saturated for 14 s (CPU 98 %, memory 95 %)"
        assert t["warnings"] == [gen_b_line]
    async with serving(tmp_path / "d") as env:
        assert await _warnings(env, test_id) == [
            "results may be skewed: gen-b saturated for 14 s (CPU 98 %, memory 95 %)"
        ]


async def test_swapping_and_tcp_retransmits_saturate_but_not_under_their_floor(env: Env) -> None:
    test_id, (gen_a, gen_b, gen_c), (rep_a, rep_b, rep_c) = await _running(env, "gen-a", "gen-b", "gen-c")
    now = time.time() + 20  # after every sample the agent sent before (older ones are dropped)
    await _hot_beat(env, gen_a, [rep_a], _sample(now, swap_in_bps=2 * 1048576.0, swap_out_bps=1048576.0))
    await _hot_beat(env, gen_b, [rep_b], _sample(now, tcp_segments_out_per_s=1000.0, tcp_retransmits_per_s=50.0))
    # 20 % retransmitted, but of 50 segments a second: too few to say; 1 % of many: fine
    few = _sample(now - 1, tcp_segments_out_per_s=50.0, tcp_retransmits_per_s=10.0)
    many = _sample(now, tcp_segments_out_per_s=10000.0, tcp_retransmits_per_s=100.0, swap_in_bps=4096.0)
    await _hot_beat(env, gen_c, [rep_c], few, many)

    async def both() -> Any:
        return len(await _warnings(env, test_id)) == 2

    await wait_until_async(both, what="two warnings")
    assert (await _agent(env, gen_a[0]))["saturated"] == "swapping 3.0 MiB/s"
    assert (await _agent(env, gen_b[0]))["saturated"] == "TCP retransmits 5.0 % of segments sent"
    assert (await _agent(env, gen_c[0]))["saturated"] is None
    assert sorted(await _warnings(env, test_id)) == [
        "results may be skewed: gen-a saturated for 1 s (swapping 3.0 MiB/s)",
        "results may be skewed: gen-b saturated for 1 s (TCP retransmits 5.0 %)",
    ]


async def test_a_hot_agent_running_no_test_is_not_flagged(env: Env) -> None:
    ((agent_id, token),) = await fleet(env, "idle")
    now = time.time() + 20  # after every sample the agent sent before (older ones are dropped)
    await _hot_beat(env, (agent_id, token), [], *[_sample(now - 14 + i, cpu=100.0, mem=99.0) for i in range(15)])
    # the sweep runs each second: two of them later it is still not flagged
    ticks = env.ctl.last_point

    async def swept_twice() -> bool:
        return env.ctl.last_point >= ticks + 2

    await wait_until_async(swept_twice, what="two sweeps")
    assert (await _agent(env, agent_id))["saturated"] is None


def test_tcp_counters_are_read_from_proc_net_snmp(tmp_path: Path) -> None:
    snmp = tmp_path / "snmp"
    snmp.write_text(
        "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
        "Tcp: RtoAlgorithm RtoMin ActiveOpens CurrEstab InSegs OutSegs RetransSegs InErrs\n"
        "Tcp: 1 200 10 7 500 1200 34 0\n"
        "Udp: InDatagrams\nUdp: 3\n"
    )
    assert tcp_counters(snmp) == (34, 1200, 7)
    snmp.write_text("Tcp: RtoAlgorithm\nTcp: 1\n")
    assert tcp_counters(snmp) is None
    assert tcp_counters(tmp_path / "missing") is None


def test_the_agent_samples_tcp_segments_sent_and_established_connections() -> None:
    sampler = HostSampler()
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        peer, _ = server.accept()
        with peer:
            for _ in range(50):
                client.sendall(b"x" * 1000)
                peer.recv(65536)
            sample = sampler.sample()
    assert sample.tcp_established >= 2  # both ends of the loopback connection
    assert sample.tcp_segments_out_per_s > 0
    assert sample.swap_in_bps >= 0 and sample.tcp_retransmits_per_s >= 0
