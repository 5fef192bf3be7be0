"""Placement: even spread over eligible agents, bounded by their free capacity."""

from __future__ import annotations

import pytest

from octotui.server.placement import Candidate, PlacementError, capacity, eligible, place

GIB = 1024**3
MIB = 1024**2


def agent(name: str, location: str = "paris", *, online: bool = True, docker: bool = True, **kw: object) -> Candidate:
    defaults: dict[str, object] = {"cpu_count": 8, "cpu_percent": 0.0, "memory_total": 16 * GIB, "memory_percent": 0.0}
    defaults.update(kw)
    return Candidate(id=f"id-{name}", name=name, location=location, online=online, docker=docker, **defaults)  # type: ignore[arg-type]


def counts(result: list[tuple[Candidate, int]]) -> dict[str, int]:
    return {a.name: n for a, n in result}


def test_five_over_two_is_three_and_two() -> None:
    assert sorted(counts(place([agent("a"), agent("b")], 5)).values()) == [2, 3]


@pytest.mark.parametrize(
    ("agents", "count", "expected"),
    [
        (1, 1, [1]),
        (2, 2, [1, 1]),
        (3, 7, [2, 2, 3]),
        (4, 4, [1, 1, 1, 1]),
        (5, 3, [1, 1, 1]),  # fewer containers than agents: one each on three agents
        (3, 30, [10, 10, 10]),
    ],
)
def test_spread_is_even(agents: int, count: int, expected: list[int]) -> None:
    result = place([agent(f"h{i}") for i in range(agents)], count)
    assert sorted(counts(result).values()) == expected
    assert sum(n for _, n in result) == count


def test_location_filter_keeps_only_wanted_locations() -> None:
    pool = [agent("p1", "paris"), agent("p2", "paris"), agent("n1", "nyc")]
    result = counts(place(pool, 4, locations=["paris"]))
    assert result == {"p1": 2, "p2": 2}
    result = counts(place(pool, 3, locations=["paris", "nyc"]))
    assert result == {"p1": 1, "p2": 1, "n1": 1}


def test_offline_and_dockerless_agents_are_skipped() -> None:
    pool = [agent("up"), agent("down", online=False), agent("nodocker", docker=False)]
    assert counts(place(pool, 3)) == {"up": 3}
    assert [a.name for a in eligible(pool, None)] == ["up"]


def test_no_eligible_agent_is_a_clear_error() -> None:
    with pytest.raises(PlacementError, match="no online agent with a usable Docker engine"):
        place([agent("down", online=False), agent("nodocker", docker=False)], 1)
    with pytest.raises(PlacementError, match="in tokyo"):
        place([agent("p1", "paris")], 1, locations=["tokyo"])
    with pytest.raises(PlacementError, match="no online agent"):
        place([], 2)


def test_capacity_from_memory() -> None:
    # 4 GiB with half used: 2 GiB free, 512 MiB each -> 4
    a = agent("m", memory_total=4 * GIB, memory_percent=50.0, cpu_count=64)
    assert capacity(a, 512 * MIB, 0.25) == 4


def test_capacity_from_cpu_budget() -> None:
    # 2 cores, a quarter core each -> 8, minus the containers already placed there
    a = agent("c", cpu_count=2, cpu_percent=50.0, memory_total=64 * GIB)
    assert capacity(a, 512 * MIB, 0.25) == 8
    assert capacity(agent("d", cpu_count=2, running=5, reserved=1), 512 * MIB, 0.25) == 2
    # a momentary CPU peak does not make a machine refuse work
    busy = agent("busy", cpu_count=2, cpu_percent=100.0)
    assert capacity(busy, 512 * MIB, 0.25) == 8


def test_busy_agent_loses_ties_but_spread_stays_even() -> None:
    calm = agent("z-calm", cpu_percent=20.0)
    busy = agent("a-busy", cpu_percent=95.0)
    assert counts(place([busy, calm], 1)) == {"z-calm": 1}
    assert counts(place([busy, calm], 4)) == {"a-busy": 2, "z-calm": 2}


def test_capacity_minus_reserved_and_unknown_memory() -> None:
    a = agent("r", cpu_count=1, cpu_percent=0.0, memory_total=0, reserved=3)
    assert capacity(a, 512 * MIB, 0.25) == 1  # 4 by CPU, memory unknown, 3 already on their way
    assert capacity(agent("x", reserved=100), 512 * MIB, 0.25) == 0


def test_never_exceeds_capacity_and_fills_the_bigger_agent() -> None:
    small = agent("small", cpu_count=1, memory_total=64 * GIB)  # 4 by CPU
    big = agent("big", cpu_count=8, memory_total=64 * GIB)  # 32 by CPU
    result = counts(place([small, big], 10))
    assert result == {"small": 4, "big": 6}


def test_ties_go_to_the_agent_with_more_room() -> None:
    small = agent("a-small", cpu_count=1)
    big = agent("z-big", cpu_count=8)
    assert counts(place([small, big], 1)) == {"z-big": 1}


def test_total_capacity_too_small_refuses_everything() -> None:
    pool = [agent("a", cpu_count=1), agent("b", cpu_count=1)]  # 4 + 4
    with pytest.raises(PlacementError) as info:
        place(pool, 9)
    assert str(info.value) == "needs 9 containers, the provider's online agents with Docker can hold only 8"
    assert sum(n for _, n in place(pool, 8)) == 8


def test_zero_containers_is_refused() -> None:
    with pytest.raises(PlacementError, match="at least one"):
        place([agent("a")], 0)


def test_result_is_deterministic_and_ordered() -> None:
    pool = [agent("b", "x"), agent("a", "y"), agent("c", "x")]
    first = place(pool, 5)
    assert first == place(list(reversed(pool)), 5)
    assert [a.name for a, _ in first] == ["b", "c", "a"]  # by location, then name


def test_large_placement_is_fast_and_even() -> None:
    pool = [agent(f"h{i:04d}", cpu_count=4) for i in range(5000)]
    result = place(pool, 1000)
    assert len(result) == 1000 and all(n == 1 for _, n in result)
