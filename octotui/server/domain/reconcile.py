"""Heartbeats: an agent's host sample and the containers it reports, reconciled with what the
server knows (strays are stopped, silent containers become lost, stops are asked again)."""

from __future__ import annotations

import logging

from octotui.protocol import ContainerReport, Heartbeat, HeartbeatResponse
from octotui.server.domain import clock, labels, lifecycle, monitors
from octotui.server.domain.state import ServerState
from octotui.server.records import AgentRec, ContainerRec

log = logging.getLogger("octotui.server")

#: How many complete heartbeats may omit a launched container before it counts as lost.
MISSING_LIMIT = 2


def heartbeat(s: ServerState, agent_id: str, hb: Heartbeat) -> HeartbeatResponse:
    """Take one heartbeat. Synchronous and store-free: it runs on the hot path."""
    a = s.get_agent(agent_id)
    now = clock.now()
    a.last_seen = a.health_ref = now
    s.seen_unsaved.add(agent_id)
    if a.status != "online":
        log.info("agent %s (%s) is online", a.name, a.id)
        a.status = "online"
    a.host = hb.host
    a.docker = hb.docker
    s.feed.touch("agent", agent_id)
    s.hosts.add(agent_id, [*hb.samples, hb.host] if hb.samples else [hb.host])
    stop: list[str] = []
    # Tests are brought up to date once every report is in: an agent back from an outage
    # reports all its containers, and the first must not end a test the others belong to.
    s.held = set()
    try:
        _apply_reports(s, a, hb, now, stop)
    finally:
        held, s.held = s.held, None
    for test_id in held:
        if (t := s.tests.get(test_id)) is not None:
            lifecycle.update_test(s, t)
    wanted = labels.wanted(s, agent_id, hb)
    # The monitors it reports, and its assignment only when its revision differs.
    assigned = monitors.heartbeat(s, agent_id, hb.monitors, hb.monitor_revision)
    if assigned is not None:
        return HeartbeatResponse(stop=stop, labels_wanted=wanted, monitors=assigned[0], monitor_revision=assigned[1])
    if wanted:
        return HeartbeatResponse(stop=stop, labels_wanted=wanted)
    return HeartbeatResponse(stop=stop)


def _apply_reports(s: ServerState, a: AgentRec, hb: Heartbeat, now: float, stop: list[str]) -> None:
    reported: set[str] = set()
    for report in hb.containers:
        reported.add(report.container_id)
        c = s.containers.get(report.container_id)
        if c is None or c.agent_id != a.id:
            if report.state not in lifecycle.TERMINAL and _stray(s, a, report):
                stop.append(report.container_id)  # a stray: no record of it here
            continue
        if _apply_report(s, c, report, now):
            stop.append(c.id)
    if hb.complete:
        _count_missing(s, a, reported)


def _stray(s: ServerState, a: AgentRec, report: ContainerReport) -> bool:
    """Whether a container this server has no record of is to be stopped now. Alone, a server knows
    every container it made; with other replicas, it is a stray once its test, read from the tables
    on demand, does not hold it (``replica/strays.py``): until then it is left running."""
    if s.replica is None or not s.replica.others:
        return True
    return s.replica.strays.stray(report.container_id, report.test_id, a.id)


def _count_missing(s: ServerState, a: AgentRec, reported: set[str]) -> None:
    """A complete heartbeat omits a live container: after ``MISSING_LIMIT`` of them, it is lost."""
    for cid in list(s.live.get(a.id, ())):
        c = s.containers[cid]
        if cid in reported or c.state == "pending":
            continue
        c.missing += 1
        if c.missing < MISSING_LIMIT:
            continue
        if c.state == "stopping" and c.docker_id is None and c.figures is None:
            # Stopped while its launch was on its way: the agent never started it.
            lifecycle.set_state(s, c, "failed", "stopped before it started")
        else:
            lifecycle.set_state(s, c, "lost", f"agent {a.name} no longer reports this container")


def _apply_report(s: ServerState, c: ContainerRec, r: ContainerReport, now: float) -> bool:
    """Fold one report into its record; True when the agent should stop that container."""
    c.missing = 0
    labels.take(s, c, r)  # in any state: a JTL's last rows may be read after the container ended
    if c.state in ("finished", "failed"):
        # Ended here (e.g. stopped before it started) but still running there.
        return r.state not in lifecycle.TERMINAL
    t = s.tests.get(c.test_id)
    # Its test was stopped (or it alone was): until the agent reports it ended, every
    # heartbeat answers with its stop again (a stop may arrive while it is still starting).
    stop_wanted = c.state == "stopping" or (t is not None and t.stop_requested)
    c.cpu_percent, c.memory_bytes, c.pull_progress = r.cpu_percent, r.memory_bytes, r.pull_progress
    if r.docker_id:
        c.docker_id = r.docker_id
    if r.figures is not None:
        c.figures = r.figures
    if r.final is not None and c.final != r.final:
        c.final = r.final
        s.unsaved.containers.add(c.id)
    if r.exit_code is not None:
        c.exit_code = r.exit_code
    if c.state == "lost" and r.state not in lifecycle.TERMINAL:
        c.error = None  # taken back: "agent … went offline" no longer holds
    if r.error:
        c.error = r.error
    state = r.state
    if stop_wanted and state not in lifecycle.TERMINAL:
        state = "stopping"  # a stop is under way: the agent has not honoured it yet
    if state != c.state:
        lifecycle.set_state(s, c, state, r.error)
    c.updated_at = now
    lifecycle.touch_container(s, c)
    ended = t is None or t.state in lifecycle.TEST_TERMINAL
    return (ended or stop_wanted) and state not in lifecycle.TERMINAL
