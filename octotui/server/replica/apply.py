"""Records another replica changed, read back from the tables (a :class:`~.reader.Delta`), taken
into this replica's memory."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from octotui.server.records import AgentRec, ContainerRec, ProviderRec, TestRec
from octotui.server.replica.reader import AGENT_FIELDS, CONTAINER_FIELDS, TEST_FIELDS, Delta

if TYPE_CHECKING:
    from octotui.server.domain.state import ServerState


def apply(s: ServerState, d: Delta) -> None:
    """Take records another replica changed (as read from the tables) into memory; a record changed
    here and not written yet keeps this replica's version (written after, it wins everywhere)."""
    for pid, p in d.providers.items():
        _provider(s, pid, p)
    for agent_id, a in d.agents.items():
        _agent(s, agent_id, a)
    for test_id, (t, cs) in d.tests.items():
        _test(s, test_id, t, cs)
    for c in d.containers.values():
        if c is not None:
            _container(s, c)
    if d.operators is not None:
        s.tokens.replace_operators(d.operators)
    if d.monitors or d.test_monitors or d.alarms or any(a is None for a in d.agents.values()):
        from octotui.server.domain import alarms, monitors

        # After the agents and tests: a monitor's agent and a test naming monitors are known by then.
        # An agent deleted: its monitors are assigned to none (and read "agent deleted").
        monitors.take(s, d.monitors, d.test_monitors)
        alarms.take(s, d.alarms)
    for command_id in d.done:
        s.commands.discard(command_id)
    for agent_id, cmds in d.commands.items():
        if agent_id not in s.agents:
            continue
        done = set(s.unsaved.done_commands)
        for cmd in cmds:
            if s.commands.get(agent_id, cmd.id) is None and cmd.id not in s.acked and cmd.id not in done:
                s.commands.push(cmd)  # wakes the agent's long poll here


def _provider(s: ServerState, pid: str, p: ProviderRec | None) -> None:
    old = s.providers.get(pid)
    if old is not None:
        s.tokens.remove(old.token_hash)
    if p is None:
        if old is not None:
            del s.providers[pid]
            s.feed.remove("provider", pid)
        return
    if old is None:
        s.providers[pid] = old = p
    old.name, old.token_hash = p.name, p.token_hash
    s.tokens.add(p.token_hash, "provider", pid)
    s.feed.touch("provider", pid)


def _agent(s: ServerState, agent_id: str, a: AgentRec | None) -> None:
    from octotui.server.domain import agents, fleet

    old = s.agents.get(agent_id)
    if old is not None:
        s.tokens.remove(old.token_hash)
        agents.count_name(s, old, -1)
        fleet.count_machine(s, old, -1)
    if a is None:
        if old is not None:
            del s.agents[agent_id]
            s.commands.drop_agent(agent_id)
            s.hosts.drop(agent_id)
            s.feed.remove("agent", agent_id)
        return
    if old is None:
        a.health_ref = a.last_seen or time.time()
        s.agents[agent_id] = old = a
    else:
        for name in AGENT_FIELDS:
            setattr(old, name, getattr(a, name))
        if a.last_seen is not None and (old.last_seen is None or a.last_seen > old.last_seen):
            old.last_seen = a.last_seen
    old.status = agents.status(s, old, time.time())
    s.tokens.add(old.token_hash, "agent", agent_id)
    agents.count_name(s, old, +1)
    fleet.count_machine(s, old, +1)
    s.feed.touch("agent", agent_id)


def _test(s: ServerState, test_id: str, t: TestRec | None, cs: list[ContainerRec]) -> None:
    old = s.tests.get(test_id)
    if t is None:
        if old is None or test_id in s.unsaved.tests:
            return
        del s.tests[test_id]
        for cid in old.container_ids:
            if (c := s.containers.pop(cid, None)) is not None:
                s.live.get(c.agent_id, set()).discard(cid)
                s.labels.pop(cid, None)
        s.series.drop(test_id)
        s.launch_keys.forget_test(test_id)
        s.feed.remove("test", test_id)
        return
    if old is None:
        s.tests[test_id] = t
    elif test_id not in s.unsaved.tests and ("test", test_id) not in s.store.writing:
        for name in TEST_FIELDS:
            setattr(old, name, getattr(t, name))
    for c in cs:
        _container(s, c)
    s.feed.touch("test", test_id)


def _container(s: ServerState, c: ContainerRec) -> None:
    from octotui.server.domain import lifecycle

    if c.id in s.unsaved.containers or ("container", c.id) in s.store.writing:
        return
    old = s.containers.get(c.id)
    if old is None:
        s.containers[c.id] = old = c
    else:
        figures = old.figures
        for name in CONTAINER_FIELDS:
            setattr(old, name, getattr(c, name))
        if old.figures is None:
            old.figures = figures
    if old.state == "stopping" and old.stopping_since is None:
        old.stopping_since = time.time()
    live = s.live.setdefault(old.agent_id, set())
    was = len(live)
    if old.state in lifecycle.TERMINAL:
        live.discard(old.id)
    else:
        live.add(old.id)
    if len(live) != was and old.agent_id in s.agents:
        s.feed.touch("agent", old.agent_id)
    lifecycle.touch_container(s, old)
