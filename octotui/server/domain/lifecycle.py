"""The test and container state machine: which states there are, how a container moves between
them, and how a test's state, reason and results follow from its containers'.

A container: pending -> (pulling ->) starting -> running -> stopping -> finished | failed | lost
(lost: its agent went offline or no longer reports it; it may be taken back). A test: pending ->
starting -> running -> stopping -> finished | failed, recomputed from its containers each time one
of them changes (:func:`set_state`), or once a heartbeat's reports are all in (``state.held``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from octotui.protocol import TERMINAL_CONTAINER_STATES, TERMINAL_TEST_STATES, ContainerState, TestState
from octotui.server.domain import clock, criteria, series
from octotui.server.domain.state import ServerState
from octotui.server.records import ContainerRec, TestRec
from octotui.server.results import final_results

log = logging.getLogger("octotui.server")

#: A container generating load, or about to (``pending`` not yet: its launch may still be withdrawn).
ACTIVE: frozenset[ContainerState] = frozenset({"pulling", "starting", "running", "stopping"})
#: A container on its way up.
STARTING: frozenset[ContainerState] = frozenset({"pulling", "starting"})
#: A container holding a place on its agent without running yet (placement counts it as reserved).
RESERVED: frozenset[ContainerState] = frozenset({"pending", "pulling", "starting"})
#: Containers that ended (the contract's), and tests that ended.
TERMINAL = TERMINAL_CONTAINER_STATES
TEST_TERMINAL = TERMINAL_TEST_STATES
#: Who stopped a test stopped by a critical alarm of a monitor it names (``domain/alarms.py``): such
#: a test ends ``failed``, its reason naming the alarm.
CRITICAL_STOP = "a critical alarm"
#: Who stopped a test whose held criterion broke (``domain/criteria.py``): it ends ``failed``.
CRITERION_STOP = "the criterion"
#: Joins a test's reason and the stops its agents have not confirmed in time.
UNCONFIRMED = "; stop not confirmed"


def stop_reason(reason: str | None) -> str | None:
    """A reason without the part naming the unconfirmed stops (recomputed each time)."""
    if reason is None:
        return None
    if reason.startswith(UNCONFIRMED[2:]):
        return None
    return reason.split(UNCONFIRMED, 1)[0]


def test_changed(s: ServerState, t: TestRec) -> None:
    """``t`` changed: write it at the next flush, show it in the change feed."""
    s.unsaved.tests.add(t.id)
    s.feed.touch("test", t.id)


def touch_container(s: ServerState, c: ContainerRec) -> None:
    """``c`` changed as listed; its test too: the test's live results sum its containers' figures."""
    s.feed.touch("container", c.id)
    s.feed.touch("test", c.test_id)


def set_state(s: ServerState, c: ContainerRec, state: ContainerState, error: str | None = None) -> None:
    """Move ``c`` to ``state`` (with ``error`` when given) and bring its test up to date."""
    c.state = state
    c.updated_at = clock.now()
    if state == "stopping" and c.stopping_since is None:
        c.stopping_since = c.updated_at
    if error:
        c.error = error
    s.unsaved.containers.add(c.id)
    touch_container(s, c)
    live = s.live.setdefault(c.agent_id, set())
    was = len(live)
    if state in TERMINAL:
        live.discard(c.id)
    else:
        live.add(c.id)
    if len(live) != was and c.agent_id in s.agents:
        s.feed.touch("agent", c.agent_id)  # its count of containers
    t = s.tests.get(c.test_id)
    if t is not None:
        if s.held is not None:
            s.held.add(t.id)
        else:
            update_test(s, t)


def _next_state(t: TestRec, states: set[ContainerState], waiting: bool) -> TestState:
    """A test's state from its containers' (at least one of them not ended, or ``waiting``)."""
    if waiting:
        return t.state  # nothing live: it keeps its state while it waits for lost containers
    if t.stop_requested:
        return "stopping"
    if "running" in states:
        return "running"
    if "stopping" in states and "pending" not in states and not states & STARTING:
        return "stopping"  # its last live containers were stopped one by one
    if states & ACTIVE:
        return "starting"
    return "pending"


def update_test(s: ServerState, t: TestRec) -> None:
    """Recompute a test's state and reason from its containers; end it when they all ended."""
    if t.state in TEST_TERMINAL:
        return
    cs = s.containers_of(t)
    states = {c.state for c in cs}
    waiting_until = _awaiting_return(s, t, cs) if states <= TERMINAL else None
    if states <= TERMINAL and waiting_until is None:
        _end_test(s, t, cs)
        return
    new = _next_state(t, states, waiting_until is not None)
    if new != t.state:
        if new == "running" and t.started_at is None:
            t.started_at = clock.now()
        t.state = new
        test_changed(s, t)
        log.info("test %s (%s) is %s", t.name, t.id, new)
    reason = _degraded_reason(s, cs) or (stop_reason(t.reason) if t.stop_requested else None)
    if (late := _unconfirmed_stops(s, cs)) is not None:
        reason = f"{reason}; {late}" if reason else late
    if reason and waiting_until is not None:
        reason += f"; waiting for the agent to come back (at most {s.settings.return_wait:.0f} s"
        reason += " after the planned end)" if t.planned_duration is not None else " after the loss)"
    if reason != t.reason:
        t.reason = reason
        test_changed(s, t)
        if reason:
            log.warning("test %s (%s) runs %s", t.name, t.id, reason)


def _awaiting_return(s: ServerState, t: TestRec, cs: list[ContainerRec]) -> float | None:
    """Until when a test with nothing live left waits for lost containers' agents (None: it does not).

    An offline agent may come back (a network outage, a reboot) with its containers' results;
    the test waits for it until its planned end plus ``return_wait`` (the loss plus
    ``return_wait`` without a planned duration). A stop, or agents back or gone, end it.
    """
    if t.stop_requested:
        return None
    waiting = [
        c
        for c in cs
        # started there (a launch never acknowledged was withdrawn: nothing comes back)
        if c.state == "lost"
        and (c.docker_id is not None or c.figures is not None)
        and (a := s.agents.get(c.agent_id)) is not None
        # away, or back without the engine that could list its containers
        and (a.status != "online" or a.docker is None or not a.docker.available)
    ]
    if not waiting:
        return None
    if t.planned_duration is not None:
        until = (t.started_at or t.created_at) + t.planned_duration + s.settings.return_wait
    else:
        until = max(c.updated_at for c in waiting) + s.settings.return_wait
    return until if clock.now() < until else None


def _unconfirmed_stops(s: ServerState, cs: list[ContainerRec]) -> str | None:
    """Which containers have not confirmed their stop within ``stop_deadline`` (on which agent,
    since when), or None when none is that late."""
    deadline = s.settings.stop_deadline
    now = clock.now()
    late = [
        c for c in cs if c.state == "stopping" and c.stopping_since is not None and now - c.stopping_since >= deadline
    ]
    if not late:
        return None
    parts = []
    for c in late[:5]:
        a = s.agents.get(c.agent_id)
        since = datetime.fromtimestamp(c.stopping_since or now, UTC).strftime("%H:%M:%S UTC")
        parts.append(f"container {c.index} on {a.name if a else '?'} ({c.agent_id}) since {since}")
    more = f" and {len(late) - 5} more" if len(late) > 5 else ""
    return f"stop not confirmed within {deadline:.0f} s: {', '.join(parts)}{more}"


def _where(s: ServerState, c: ContainerRec) -> str:
    agent = s.agents.get(c.agent_id)
    return agent.name if agent else c.agent_id


def _degraded_reason(s: ServerState, cs: list[ContainerRec]) -> str | None:
    """Why a test still running has lost part of its load, or None while all is well."""
    bad = [c for c in cs if c.state in ("lost", "failed")]
    if not bad:
        return None
    first = bad[0]
    lost = sum(1 for c in bad if c.state == "lost")
    failed = len(bad) - lost
    parts = [f"{n} {word}" for n, word in ((lost, "lost"), (failed, "failed")) if n]
    reason = f"degraded: {' and '.join(parts)} of {len(cs)} containers; container {first.index} on {_where(s, first)}"
    return reason + (f": {first.error}" if first.error else f" is {first.state}")


def _end_test(s: ServerState, t: TestRec, cs: list[ContainerRec]) -> None:
    now = clock.now()
    series.last_point(s, t, cs, now)  # what its labels did since the last point (the JTL's tail)
    t.ended_at = now
    bad = [c for c in cs if c.state != "finished"]
    if t.stop_requested or len(bad) < len(cs):
        t.state = "finished"
    else:
        t.state = "failed"
    base = stop_reason(t.reason)
    stopped = base if t.stop_requested and base and base.startswith("stopped by") else None
    if stopped and stopped.startswith(f"stopped by {CRITERION_STOP}"):
        t.state = "failed"  # a held criterion broke: its reason names it and the figures
    if stopped and stopped.startswith(f"stopped by {CRITICAL_STOP}"):
        t.state = "failed"
    if bad:
        first = bad[0]
        t.reason = f"{len(bad)} of {len(cs)} containers {'did not finish' if t.state == 'finished' else 'failed'}"
        t.reason += f"; container {first.index} on {_where(s, first)}: {first.state}"
        if first.error:
            t.reason += f": {first.error}"
        if stopped:
            t.reason = f"{stopped}; {t.reason}"
    else:
        t.reason = stopped
    started = t.started_at or t.created_at
    t.results = final_results(cs, now - started if t.started_at else None)
    criteria.decide(s, t)
    test_changed(s, t)
    log.info("test %s (%s) %s%s", t.name, t.id, t.state, f" ({t.reason})" if t.reason else "")
