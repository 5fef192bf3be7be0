"""Tests' timelines published by the lease holder and taken by the other replicas
(``octotui/server/domain/seriesshare.py``), without PostgreSQL: the real ``series.sample`` on one
state, its publication encoded as ``replica/live.py`` stores it, taken by another state; the bytes a
second of 16 containers x 200 labels costs; a publication that does not decode changes nothing."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from octotui.protocol import HostSample, JMeterFigures, LabelStats
from octotui.server.domain import series, seriesshare
from octotui.server.domain.state import ServerState
from octotui.server.labelbook import LabelBook
from octotui.server.records import AgentRec, ContainerRec, TestRec
from octotui.server.replica import live
from octotui.server.settings import ServerSettings
from octotui.server.store import Store
from tests.support.wireagent import label_stats

CONTAINERS, LABELS = 16, 200
rng = random.Random(14)


class _Replica:
    """The bits of ``Replica`` the timelines look at."""

    def __init__(self, leader: bool) -> None:
        self.leader = leader


def _state(tmp_path: Path, name: str, leader: bool) -> ServerState:
    s = ServerState(ServerSettings(data_dir=tmp_path / name), Store(tmp_path / name / "octotui.db"))
    s.replica = _Replica(leader)  # type: ignore[assignment]
    s.tests["t1"] = TestRec("t1", "shop", "p1", "lab", [], "img", {}, "plan", "running", time.time())
    for i in range(CONTAINERS):
        a = AgentRec(f"g{i}", "p1", f"gen-{i}", "x", "1", 0.0, 2, 2**33, "linux", "h")
        a.host = HostSample(ts=time.time(), cpu_percent=10.0 + i, memory_percent=20.0, memory_total=2**33)
        s.agents[a.id] = a
        c = ContainerRec(f"c{i}", "t1", a.id, i, "running", 4445)
        s.containers[c.id] = c
        s.tests["t1"].container_ids.append(c.id)
    return s


def _report(s: ServerState, step: int) -> None:
    """Every container reports every label, one more sample each (cumulative)."""
    for i in range(CONTAINERS):
        c = s.containers[f"c{i}"]
        c.figures = JMeterFigures(samples=step * LABELS, errors=step, rate=LABELS, avg_ms=40.0, min_ms=1.0,
                                  max_ms=90.0, active=2)  # fmt: skip
        book = s.labels.setdefault(c.id, LabelBook())
        times = [[rng.uniform(5.0, 900.0) for _ in range(step)] for _ in range(LABELS)]
        stats = [LabelStats.model_validate(label_stats(f"l{k}", times[k])) for k in range(LABELS)]
        book.take(stats, None)


def _sample(s: ServerState, now: float) -> dict[str, Any] | None:
    t = s.tests["t1"]
    series.sample(s, t, s.containers_of(t), now)
    return seriesshare.gather(s)


def _lines(s: ServerState) -> tuple[Any, ...]:
    tl = s.timelines
    return (
        s.series.get("t1"),
        {k: v.points() for k, v in tl.labels.get("t1", {}).items()},
        {k: v.points() for k, v in tl.generators.get("t1", {}).items()},
    )


def test_the_holders_points_taken_by_another_replica_make_the_same_timelines_and_cost_about_21_kb_a_second(
    tmp_path: Path,
) -> None:
    a, b = _state(tmp_path, "a", leader=True), _state(tmp_path, "b", leader=False)
    a.timelines.leading, a.timelines.outgoing = True, {}
    now = time.time()
    sizes = []
    for step in range(1, 6):
        _report(a, step)
        data = _sample(a, now + step)
        assert data is not None
        blob = live.encode({"series": data})
        sizes.append((len(json.dumps({"series": data})), len(blob)))
        seriesshare.take(b, live.decode(blob)["series"])
    mine, theirs = _lines(b), _lines(a)
    assert mine == theirs
    assert len(mine[0]) == 5 and len(mine[1]) == LABELS and len(mine[2]) == CONTAINERS
    assert not b.timelines.behind and not b.series.dirty and not b.timelines.dirty  # stored by a
    raw, zipped = sizes[-1]
    print(f"one second of {CONTAINERS} containers x {LABELS} labels: {raw} bytes of JSON, {zipped} zlib'd")
    # The points (labels' 8 doubles, generators' 4, the test's 10) base64'd, with the labels' names.
    points = LABELS * 88 + CONTAINERS * 44 + 108  # 64, 32 and 80 bytes a point
    assert points < raw < points + LABELS * 14 + CONTAINERS * 30 + 200, sizes
    assert zipped < raw, sizes


def test_a_replica_that_missed_points_is_behind_from_the_first_it_got_and_asks_for_a_save(tmp_path: Path) -> None:
    a, b = _state(tmp_path, "a", leader=True), _state(tmp_path, "b", leader=False)
    a.timelines.leading, a.timelines.outgoing = True, {}
    now = time.time()
    _report(a, 1)
    first = _sample(a, now + 1)
    assert first is not None
    _report(a, 2)
    second = _sample(a, now + 2)  # the first is lost
    assert second is not None
    seriesshare.take(b, live.decode(live.encode({"series": second}))["series"])
    assert b.timelines.behind == {"t1": now + 2}
    asked = seriesshare.gather(b)
    assert asked == {"wanted": ["t1"]}
    assert seriesshare.gather(b) is None  # asked again only after WANTED_EVERY
    before = a.series_saved_at
    seriesshare.take(a, asked)
    assert a.series_saved_at == float("-inf") and before != a.series_saved_at  # the next save stores all


def test_points_that_do_not_decode_are_left_out_and_the_test_read_back_from_the_store(tmp_path: Path) -> None:
    b = _state(tmp_path, "b", leader=False)
    bad: list[Any]
    for bad in (
        [None, "not base64!", {}, {}],
        [None, "AAAA", {}, {}],  # 3 bytes: not a point of 10 doubles
        [None, "", {"home": "AAAAAAAAAAA="}, {}],  # one double: not a label's point
        [None, "", {}, {"g1": ["gen", 5]}],
        [None, ""],
    ):
        seriesshare.take(b, {"points": {"t1": bad}})
        assert _lines(b) == ([], {}, {}), bad
        assert "t1" in b.timelines.behind
        b.timelines.behind.clear()
    bad_part: Any
    for bad_part in ([], {"points": ["t1"]}, "x"):
        seriesshare.take(b, bad_part)
        assert _lines(b) == ([], {}, {}) and not b.timelines.behind, bad_part
    seriesshare.take(b, {"points": {"unknown": [None, "", {}, {}]}})  # a test not read here: left out
    assert b.timelines.behind == {} and "unknown" not in b.series
