"""Agents: health from heartbeat ages, registration (who an agent is), deletion and retiring."""

from __future__ import annotations

import dataclasses
import logging

from octotui.protocol import AgentStatus, RegisterRequest, RegisterResponse
from octotui.server.auth import hash_token, new_token
from octotui.server.domain import clock, fleet, lifecycle, persistence, stopping
from octotui.server.domain.state import ServerState, new_id
from octotui.server.errors import Conflict, Unauthorized
from octotui.server.records import AgentRec

log = logging.getLogger("octotui.server")


def status(s: ServerState, a: AgentRec, now: float) -> AgentStatus:
    """An agent's health from the age of its last heartbeat; in a grace (``health_ref`` later than it:
    this server restarted, or a replica was cut from the others' heartbeats and just got them back),
    from the grace's start, as the containers' loss is (``ticks.tick``): it could not see heartbeats
    before, so an agent that was not offline then is not called late (the log's "is late" lines)
    until ``late_after`` seconds after it."""
    if a.last_seen is None:
        return "offline"
    ref = a.last_seen
    if ref < a.health_ref and a.health_ref - ref < s.settings.offline_after:
        ref = a.health_ref
    age = now - ref
    if age < s.settings.late_after:
        return "online"
    return "late" if age < s.settings.offline_after else "offline"


async def register(s: ServerState, provider_id: str, req: RegisterRequest) -> RegisterResponse:
    """Give an agent its identity; an agent already known (by previous id, else by name) keeps its id."""
    if provider_id not in s.providers:
        raise Unauthorized("invalid or revoked token")
    fleet.check_version(req.version)
    now = clock.now()
    a = known_agent(s, provider_id, req)
    token = new_token()
    token_hash = hash_token(token)
    if a is None:
        a = AgentRec(
            id=new_id("a"),
            provider_id=provider_id,
            name=req.name,
            location=req.location,
            version=req.version,
            registered_at=now,
            cpu_count=req.cpu_count,
            memory_total=req.memory_total,
            platform=req.platform,
            token_hash=token_hash,
        )
        a.instance = req.instance
        a.machine_id = req.machine_id
        s.agents[a.id] = a
        count_name(s, a, +1)
        fleet.count_machine(s, a, +1)
        log.info("agent %s registered in provider %s as %s", a.name, s.providers[provider_id].name, a.id)
    else:
        _register_again(s, a, req, token_hash)
    a.last_seen = a.health_ref = now
    a.status = "online"
    s.feed.touch("agent", a.id)
    s.feed.touch("provider", provider_id)  # its agent count and locations
    s.tokens.add(token_hash, "agent", a.id)
    await s.store.save_agent(a)
    await fleet.save(s, a)  # drained kept (the same identity replaced keeps it), its machine id
    return RegisterResponse(
        agent_id=a.id,
        agent_token=token,
        provider=provider_id,
        heartbeat_interval=s.settings.heartbeat_interval,
        poll_timeout=s.settings.poll_timeout_max,
    )


def _register_again(s: ServerState, a: AgentRec, req: RegisterRequest, token_hash: str) -> None:
    """A known agent registers again: same id, what it says of itself now, a new token."""
    s.tokens.remove(a.token_hash)
    if (a.name, a.location) != (req.name, req.location):
        touch_containers_of(s, {a.id})
    count_name(s, a, -1)
    a.name, a.location, a.version = req.name, req.location, req.version
    count_name(s, a, +1)
    a.instance = req.instance or a.instance
    fleet.set_machine(s, a, req.machine_id)
    a.cpu_count, a.memory_total, a.platform = req.cpu_count, req.memory_total, req.platform
    a.token_hash = token_hash
    # It may have lost what it was handed: hand out its queued commands again.
    s.commands.reset_delivery(a.id)
    log.info("agent %s (%s) registered again: same id, new token", a.name, a.id)


def known_agent(s: ServerState, provider_id: str, req: RegisterRequest) -> AgentRec | None:
    """The agent of ``provider_id`` a registration is from, or None when it is a new one.

    By previous id, else by instance (the random id of the agent's state dir); by name only for
    agents older than instances. An agent with an instance never takes a record of another.
    """

    def fits(x: AgentRec) -> bool:
        return x.provider_id == provider_id and (req.instance is None or x.instance in (None, req.instance))

    if req.previous_agent_id:
        prev = s.agents.get(req.previous_agent_id)
        if prev is not None and fits(prev):
            return prev
    if req.instance is not None:
        return next((x for x in s.agents.values() if x.provider_id == provider_id and x.instance == req.instance), None)
    return next(
        (x for x in s.agents.values() if x.provider_id == provider_id and x.name == req.name and x.instance is None),
        None,
    )


def count_name(s: ServerState, a: AgentRec, step: int) -> None:
    """Count agents per (provider, name); the agents of a name that becomes or stops being shared change."""
    key = (a.provider_id, a.name)
    count = s.names.get(key, 0) + step
    if count > 0:
        s.names[key] = count
    else:
        s.names.pop(key, None)
    if (count == 2 and step > 0) or (count == 1 and step < 0):
        for x in s.agents.values():
            if (x.provider_id, x.name) == key:
                s.feed.touch("agent", x.id)


def forget(s: ServerState, agent_id: str) -> None:
    """Drop an agent from memory: token revoked, windows and queued commands gone, containers lost."""
    a = s.agents.pop(agent_id)
    count_name(s, a, -1)
    fleet.count_machine(s, a, -1)
    s.tokens.remove(a.token_hash)
    s.hosts.drop(agent_id)
    for cmd in s.commands.drop_agent(agent_id):
        s.unsaved.done_commands.append(cmd.id)
    for cid in list(s.live.get(agent_id, ())):
        lifecycle.set_state(s, s.containers[cid], "lost", f"agent {a.name} was deleted")
    s.live.pop(agent_id, None)
    s.labels_wanted.pop(agent_id, None)
    s.feed.remove("agent", agent_id)
    s.feed.touch("provider", a.provider_id)


def touch_containers_of(s: ServerState, agent_ids: set[str]) -> None:
    """Containers show their agent's name and location: they change when it is renamed,
    moved or deleted. Rare: one scan of every container is fine."""
    for c in s.containers.values():
        if c.agent_id in agent_ids:
            s.feed.touch("container", c.id)


async def delete(s: ServerState, agent_id: str, force: bool = False) -> bool:
    """Forget an agent and revoke its token; True when done now.

    An agent running containers is refused (:class:`Conflict` naming its tests) unless
    ``force``; forced, an agent still online is kept (retiring) while its containers are
    stopped and hand in their results, and forgotten once they all ended (False); an offline
    one is forgotten at once, its containers lost.
    """
    a = s.get_agent(agent_id)
    live = [s.containers[cid] for cid in sorted(s.live.get(agent_id, ()))]
    if live and not force:
        tests = [s.tests[t] for t in dict.fromkeys(c.test_id for c in live) if t in s.tests]
        names = ", ".join(f"{t.name!r} ({t.id})" for t in tests)
        raise Conflict(
            f"agent {a.name} ({a.id}) still runs {len(live)} container(s) of {names}: stop them first, or"
            " delete it with force=true (its containers are stopped and their results kept, then it is forgotten)"
        )
    if live and status(s, a, clock.now()) != "offline":
        await s.store.save_agent(dataclasses.replace(a, retiring=True))  # a restart keeps it retiring
        a.retiring = True
        # A test left with no load elsewhere is stopped as a whole (it then reads stopped); the
        # containers of tests running on other agents too are stopped one by one.
        for test_id in dict.fromkeys(c.test_id for c in live):
            t = s.tests.get(test_id)
            if t is not None and not any(
                c.agent_id != a.id and c.state not in lifecycle.TERMINAL for c in s.containers_of(t)
            ):
                stopping.stop_test(s, t, f"the deletion of agent {a.name}")
        for c in live:
            if c.state != "stopping":
                stopping.stop_container(s, c)
        s.feed.touch("agent", a.id)
        await persistence.flush(s)
        log.info("agent %s (%s) retiring: %d container(s) stopped, forgotten once they ended", a.name, a.id, len(live))
        return False
    await _delete_now(s, a)
    return True


async def _delete_now(s: ServerState, a: AgentRec) -> None:
    forget(s, a.id)
    touch_containers_of(s, {a.id})
    await s.store.delete_agent(a.id)
    await persistence.flush(s)
    log.info("agent %s (%s) deleted, its token revoked", a.name, a.id)


async def retire(s: ServerState) -> None:
    """Forget the retiring agents whose containers have all ended."""
    for a in [a for a in s.agents.values() if a.retiring and not s.live.get(a.id)]:
        await _delete_now(s, a)
