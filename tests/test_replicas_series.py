"""A running test's timeline (``GET /tests/{id}/series``) across replicas on one PostgreSQL (issue 14,
``octotui/server/domain/seriesshare.py``): the replica without the lease serves the holder's, a
takeover of the lease (its holder killed) loses nothing before it, and a replica restarted mid-test
serves the whole timeline again. Two real ``octotui server`` processes, a wire agent beating one."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ServerProcess
from tests.support.replicas import LabelBeats, agent_on, lease_holders, provider, replicas, running
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.timeout(120)]


def _get(server: ServerProcess, test_id: str, **params: str) -> dict[str, Any]:
    with server.client() as http:
        answer = http.get(f"/tests/{test_id}/series", params=params)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def _series(server: ServerProcess, test_id: str) -> list[dict[str, Any]]:
    return list(_get(server, test_id)["points"])


def _labels(server: ServerProcess, test_id: str) -> list[dict[str, Any]]:
    """The test's labels' and generators' timelines."""
    got = _get(server, test_id, labels="true", generators="true")
    return list(got["labels"]) + list(got["generators"])


def _holder_and_other(servers: list[ServerProcess], dsn: str) -> tuple[ServerProcess, ServerProcess]:
    (port,) = wait_until(lambda: lease_holders(dsn) or None, timeout=10, what="a lease holder")
    (holder,) = [s for s in servers if s.port == port]
    (other,) = [s for s in servers if s is not holder]
    return holder, other


def _ts(points: list[dict[str, Any]]) -> list[float]:
    return [p["ts"] for p in points]


def _same_within_a_point(mine: list[float], theirs: list[float]) -> bool:
    """``mine`` is ``theirs`` but the points in flight (a publication a second, read a second apart
    at most: two), or ``theirs`` with one more (read a moment after)."""
    n = min(len(mine), len(theirs))
    return n >= 3 and -2 <= len(mine) - len(theirs) <= 1 and mine[:n] == theirs[:n]


def test_every_replica_serves_the_running_tests_timeline_and_a_takeover_or_a_restart_loses_none_of_it(
    tmp_path: Path, pg_database: str
) -> None:
    with replicas(tmp_path, pg_database) as servers:
        holder, other = _holder_and_other(servers, pg_database)
        agent = agent_on(other, provider(holder), holder)
        container = running(agent, holder)
        beats = LabelBeats(agent, container, ms=40.0)
        try:
            tid = container["test_id"]
            wait_until(lambda: len(_series(holder, tid)) >= 4, timeout=20, what="4 points on the holder")

            # The replica without the lease serves the holder's timeline (it used to serve none).
            def agree() -> bool:
                return _same_within_a_point(_ts(_series(other, tid)), _ts(_series(holder, tid)))

            wait_until(agree, timeout=10, what="the other replica's timeline equal to the holder's")
            theirs, mine = _series(holder, tid), _series(other, tid)
            n = min(len(theirs), len(mine))
            assert mine[:n] == theirs[:n]  # every figure, not only the times
            assert any(p["rate"] > 0 for p in mine)

            def lines_agree() -> bool:
                mine, theirs = _labels(other, tid), _labels(holder, tid)
                return len(mine) == len(theirs) == 2 and all(
                    _same_within_a_point(_ts(a["points"]), _ts(b["points"])) for a, b in zip(mine, theirs, strict=True)
                )

            wait_until(lines_agree, timeout=10, what="the label's and generator's timelines on the other replica")

            # The holder killed: the other takes the lease and goes on from the test's start (it used
            # to start from nothing at the takeover and overwrite what was stored).
            before = _ts(_series(holder, tid))
            killed_at = time.time()
            holder.stop(signal.SIGKILL)
            wait_until(lambda: lease_holders(pg_database) == [other.port], timeout=15, what="the lease taken over")
            leased_at = time.time()

            def resumed() -> bool:
                got = _ts(_series(other, tid))
                return got[-1] > leased_at and len(got) > len(before) + 2

            wait_until(resumed, timeout=15, what="points after the takeover")
            after = _ts(_series(other, tid))
            assert after[0] == before[0], "the timeline starts at the test's start, not at the takeover"
            kept = [x for x in after if x <= before[-1]]  # all but the point(s) in flight at the kill
            assert kept == before[: len(kept)] and len(kept) >= len(before) - 2, (kept, before)
            gaps = [b - a for a, b in itertools.pairwise(after)]
            # No gap but the takeover's: the lease's delay, a background round and the next point.
            assert max(gaps) <= leased_at - killed_at + 3.0, (gaps, leased_at - killed_at)
            print(f"lease taken {leased_at - killed_at:.1f} s after the kill; the widest gap {max(gaps):.1f} s")

            # The killed one back mid-test (without the lease): the stored timeline and the points since.
            holder.start()
            wait_until(lambda: len(_series(holder, tid)) > len(after), timeout=20, what="points on the restarted one")

            def whole() -> bool:
                return _same_within_a_point(_ts(_series(holder, tid)), _ts(_series(other, tid)))

            wait_until(whole, timeout=15, what="the restarted replica serving the whole timeline")
            assert _ts(_series(holder, tid))[0] == before[0]
        finally:
            beats.end()
        agent.close()
