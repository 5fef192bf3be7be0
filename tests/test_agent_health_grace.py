"""Agents' health after a server restart (``octotui/server/domain/agents.py`` ``status``): the server
could not see heartbeats while it was down, so an agent heard shortly before is not called late
(no false "agent … is late" line, trial finding F8) until ``late_after`` after the start; one that
does not come back then is, and one offline before the restart is offline at once."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from octotui.server.domain import agents as agents_domain
from octotui.server.domain import ticks
from octotui.server.domain.state import ServerState
from octotui.server.records import AgentRec
from octotui.server.settings import ServerSettings
from octotui.server.store import Store
from tests.support.labelkit import serving
from tests.support.waiting import wait_until, wait_until_async
from tests.support.wire import fleet

if TYPE_CHECKING:
    from octotui.server.replica import Replica

LATE, OFFLINE = 3.0, 8.0


async def test_no_late_line_for_an_agent_heard_before_a_restart_that_beats_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(tmp_path / "d", late_after=LATE, offline_after=OFFLINE) as env:
        (back, back_token), (gone, _), (dead, _) = await fleet(env, "back", "gone", "dead")
        env.ctl.agents[dead].last_seen = time.time() - 3600  # offline long before the restart
        env.ctl.seen_unsaved.add(dead)
        heard = time.time()
    wait_until(lambda: time.time() >= heard + 2.5, timeout=5, what="the server down 2.5 s")
    with caplog.at_level(logging.INFO, logger="octotui.server"):
        async with serving(tmp_path / "d", late_after=LATE, offline_after=OFFLINE) as env:
            started = time.time()
            assert {a.name: a.status for a in env.ctl.agents.values()} == {
                "back": "online", "gone": "online", "dead": "offline"
            }  # fmt: skip

            async def swept_past_late() -> bool:  # health swept past late_after since the last heartbeat
                return env.ctl.last_point >= heard + LATE + 0.3

            await wait_until_async(swept_past_late, timeout=10, what="late_after since the last heartbeat")
            assert time.time() < started + LATE
            await env.beat(back, back_token)

            async def gone_late() -> bool:
                return env.ctl.agents[gone].status == "late"

            await wait_until_async(gone_late, timeout=10, what="the agent not back called late")
            assert time.time() >= started + LATE
            assert agents_domain.status(env.ctl, env.ctl.agents[back], time.time()) == "online"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("agent ")]
    assert lines == [f"agent gone ({gone}) is late"], lines


def test_no_late_line_for_an_agent_of_another_replica_when_the_live_exchange_comes_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica cut from the others' heartbeats (PostgreSQL away) gives each agent a grace when the
    exchange is back (``replica/core.py`` sets ``health_ref``): its health sweep, before the others'
    next publication names the agent, does not call it late; one long offline stays so, silently."""
    settings = ServerSettings(data_dir=tmp_path / "d", late_after=LATE, offline_after=OFFLINE)
    s = ServerState(settings, Store(tmp_path / "d" / "octotui.db"))
    now = time.time()
    for name, seen in (("beating", now - LATE + 0.5), ("long-gone", now - 3600)):
        a = AgentRec(name, "p1", name, "x", "1", 0.0, 2, 2**33, "linux", "h", last_seen=seen)
        a.health_ref = seen
        a.status = agents_domain.status(s, a, now)  # as the outage left it
        a.health_ref = now  # the exchange back, as replica/core.py does
        s.agents[a.id] = a
    with caplog.at_level(logging.INFO, logger="octotui.server"):
        ticks.sweep_health(s, now + 1)
        assert {a.id: a.status for a in s.agents.values()} == {"beating": "online", "long-gone": "offline"}
        ticks.sweep_health(s, now + LATE)
    assert [r.getMessage() for r in caplog.records] == ["agent beating (beating) is late"]


class _CutReplica:
    """What sweep_health asks of a replica cut from the others (the live exchange failing)."""

    cut = True


def test_a_replica_cut_from_the_others_calls_no_agent_late_meanwhile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While PostgreSQL is away, the heartbeats the other replicas take are not seen here: an agent
    beating through them must not be called late or offline by this one; one beating here again
    comes back online."""
    settings = ServerSettings(data_dir=tmp_path / "d", late_after=LATE, offline_after=OFFLINE)
    s = ServerState(settings, Store(tmp_path / "d" / "octotui.db"))
    now = time.time()
    for name in ("elsewhere", "here"):
        a = AgentRec(name, "p1", name, "x", "1", 0.0, 2, 2**33, "linux", "h", last_seen=now)
        a.health_ref, a.status = now, "online"
        s.agents[a.id] = a
    s.agents["here"].status = "late"
    s.replica = cast("Replica", _CutReplica())
    with caplog.at_level(logging.INFO, logger="octotui.server"):
        ticks.sweep_health(s, now + OFFLINE + 1)  # both silent past offline_after, as seen here
        assert s.agents["elsewhere"].status == "online"
        s.agents["here"].last_seen = now + OFFLINE + 1  # a heartbeat here
        ticks.sweep_health(s, now + OFFLINE + 1.5)
    assert {a.id: a.status for a in s.agents.values()} == {"elsewhere": "online", "here": "online"}
    assert [r.getMessage() for r in caplog.records] == ["agent here (here) is online"]
