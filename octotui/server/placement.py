"""Where a test's containers go: spread evenly over the agents that fit, never past their capacity.

Pure functions, no I/O: the server hands in what it knows of each agent.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass


class PlacementError(Exception):
    """The containers cannot be placed; the message says why, for a human."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One agent as placement sees it."""

    id: str
    name: str
    location: str
    online: bool
    docker: bool
    cpu_count: int = 1
    cpu_percent: float = 0.0
    memory_total: int = 0  # bytes; 0 when unknown
    memory_percent: float = 0.0
    #: Containers placed on it that do not weigh on its sample yet (queued, pulling, starting).
    reserved: int = 0
    #: Containers of live tests already running on it (they hold part of its CPU budget).
    running: int = 0
    #: Taken out of service by an operator: it gets nothing new (its running containers finish).
    drained: bool = False


def capacity(agent: Candidate, memory_per_container: int, cpu_per_container: float) -> int:
    """How many more containers ``agent`` can hold.

    Memory is measured: free memory over the per-container budget, minus containers on their way
    (running ones already show in the sample). CPU is a budget, not a reading: cores over the
    per-container share, minus every container placed there. A momentary CPU peak (another test,
    a build) must not make a machine refuse work it can carry; it only loses ties (see ``place``).
    """
    limits: list[int] = []
    if agent.memory_total > 0 and memory_per_container > 0:
        free_memory = agent.memory_total * max(0.0, 100.0 - agent.memory_percent) / 100.0
        limits.append(math.floor(free_memory / memory_per_container) - agent.reserved)
    if cpu_per_container > 0:
        budget = math.floor(max(1, agent.cpu_count) / cpu_per_container + 1e-9)
        limits.append(budget - agent.reserved - agent.running)
    room = min(limits) if limits else 1_000_000 - agent.reserved
    return max(0, room)


def eligible(agents: Sequence[Candidate], locations: Sequence[str] | None) -> list[Candidate]:
    """Online agents with a usable Docker engine, in ``locations`` when given, not drained."""
    wanted = set(locations) if locations else None
    return [a for a in agents if a.online and a.docker and not a.drained and (wanted is None or a.location in wanted)]


def skipped(agents: Sequence[Candidate], locations: Sequence[str] | None) -> list[str]:
    """Why the agents that would have fitted get nothing: ``gen-b (drained)``, sorted by name."""
    wanted = set(locations) if locations else None
    return sorted(
        f"{a.name} (drained)" for a in agents if a.drained and a.online and (wanted is None or a.location in wanted)
    )


def _skipped_note(agents: Sequence[Candidate], locations: Sequence[str] | None) -> str:
    names = skipped(agents, locations)
    return f"; skipped: {', '.join(names)}: undrain to use again" if names else ""


def place(
    agents: Sequence[Candidate],
    count: int,
    *,
    locations: Sequence[str] | None = None,
    memory_per_container: int = 512 * 1024 * 1024,
    cpu_per_container: float = 0.25,
) -> list[tuple[Candidate, int]]:
    """Spread ``count`` containers over the eligible agents (drained ones never: an error names them).

    Each container goes to the agent holding the fewest so far that still has room; ties go to the
    agent with the most free CPU (in steps of 10 %, so noise does not decide), then the most room,
    then by name, so the result is even (5 over 2 agents: 3 and 2) and deterministic.
    Raises :class:`PlacementError` when they do not all fit: nothing is placed.
    Returns (agent, containers) pairs for agents that get at least one, in a stable order.
    """
    if count < 1:
        raise PlacementError(f"needs at least one container, got {count}")
    pool = eligible(agents, locations)
    where = f" in {', '.join(sorted(set(locations)))}" if locations else ""
    if not pool and (drained := skipped(agents, locations)):
        raise PlacementError(
            f"needs {count} container{'s' if count != 1 else ''}, but every online agent of the provider{where} "
            f"is drained: {', '.join(drained)}; undrain one (POST /api/v1/agents/ID/undrain) to use it"
        )
    if not pool:
        raise PlacementError(
            f"needs {count} container{'s' if count != 1 else ''}, but the provider has no online agent "
            f"with a usable Docker engine{where}{_skipped_note(agents, locations)}"
        )
    room = {a.id: capacity(a, memory_per_container, cpu_per_container) for a in pool}
    total = sum(room.values())
    if total < count:
        raise PlacementError(
            f"needs {count} containers, the provider's online agents with Docker{where} can hold only {total}"
            + _skipped_note(agents, locations)
        )
    given = {a.id: 0 for a in pool}
    # A heap keyed like the rule above: only the agent just given a container changes its key.
    busy = {a.id: int(a.cpu_percent // 10) for a in pool}
    heap = [(0, busy[a.id], -room[a.id], a.name, a.id) for a in pool if room[a.id] > 0]
    heapq.heapify(heap)
    for _ in range(count):
        n, cpu_step, neg_room, name, agent_id = heapq.heappop(heap)
        given[agent_id] = n + 1
        if neg_room + 1 < 0:
            heapq.heappush(heap, (n + 1, cpu_step, neg_room + 1, name, agent_id))
    ordered = sorted(pool, key=lambda a: (a.location, a.name, a.id))
    return [(a, given[a.id]) for a in ordered if given[a.id] > 0]
