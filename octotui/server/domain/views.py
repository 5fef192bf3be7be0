"""Views: records as the wire models list them (``octotui.protocol``). Reads only, no change."""

from __future__ import annotations

from datetime import UTC, datetime

from octotui.protocol import Agent, Changes, ContainerRecord, Provider, Test, TestFile
from octotui.server.domain import agents, clock, fleet, providers
from octotui.server.domain.lifecycle import TEST_TERMINAL
from octotui.server.domain.state import ServerState
from octotui.server.records import AgentRec, ContainerRec, ProviderRec, TestRec
from octotui.server.results import live_results


def dt(ts: float | None) -> datetime | None:
    """A timestamp as the wire's aware datetime."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def provider_out(s: ServerState, p: ProviderRec, token: str = "") -> Provider:
    """A provider as listed; ``token`` only in the answer that made it (creation, rotation)."""
    of_it = [a for a in s.agents.values() if a.provider_id == p.id]
    return Provider(
        id=p.id,
        name=p.name,
        token=token,
        created_at=dt(p.created_at),
        agents=len(of_it),
        locations=sorted({a.location for a in of_it}),
    )


def agent_out(s: ServerState, a: AgentRec) -> Agent:
    p = s.providers.get(a.provider_id)
    return Agent(
        id=a.id,
        name=a.name,
        provider=a.provider_id,
        provider_name=p.name if p else "",
        location=a.location,
        status=agents.status(s, a, clock.now()),
        last_seen=dt(a.last_seen),
        version=a.version,
        registered_at=dt(a.registered_at),
        cpu_count=a.cpu_count,
        memory_total=a.memory_total,
        platform=a.platform,
        host=a.host,
        docker=a.docker,
        containers=len(s.live.get(a.id, ())),
        duplicate_name=s.names.get((a.provider_id, a.name), 0) > 1,
        retiring=a.retiring,
        drained=a.drained,
        outdated=fleet.outdated(a),
        duplicate_machine=fleet.duplicate_machine(s, a),
        saturated=a.saturated,
    )


def container_out(s: ServerState, c: ContainerRec) -> ContainerRecord:
    a = s.agents.get(c.agent_id)
    return ContainerRecord(
        id=c.id,
        test_id=c.test_id,
        agent=c.agent_id,
        agent_name=a.name if a else "",
        location=a.location if a else "",
        state=c.state,
        index=c.index,
        docker_id=c.docker_id,
        cpu_percent=c.cpu_percent,
        memory_bytes=c.memory_bytes,
        figures=c.figures,
        final=c.final,
        exit_code=c.exit_code,
        error=c.error,
        pull_progress=c.pull_progress,
        updated_at=dt(c.updated_at),
    )


def test_out(s: ServerState, t: TestRec, with_containers: bool = True) -> Test:
    """The test as listed; ``with_containers=False``: without them (the change feed)."""
    cs = s.containers_of(t)
    results = t.results if t.results is not None else live_results(cs)
    return Test(
        id=t.id,
        name=t.name,
        provider=t.provider_id,
        # the provider's name now (renamed since?); the name it had when it is gone
        provider_name=p.name if (p := s.providers.get(t.provider_id)) else t.provider_name,
        locations=t.locations,
        image=t.image,
        properties=t.properties,
        state=t.state,
        reason=t.reason,
        created_at=dt(t.created_at),
        started_at=dt(t.started_at),
        ended_at=dt(t.ended_at),
        containers=[container_out(s, c) for c in cs] if with_containers else [],
        results=results,
        # Derived from the stored stop request: an operator's stop, or the forced deletion of the
        # agent that ran its last containers (``agents.delete``).
        stopped=t.stop_requested and t.state in TEST_TERMINAL,
        files=[TestFile(id=u.file_id, split=u.split, header=u.header) for u in t.files],
        criteria=[c.model_copy() for c in t.criteria],
        verdict=t.verdict,
        warnings=list(t.warnings),
        monitors=(named := s.monitors.of_test.get(t.id, ([], False)))[0],
        stop_on_critical=named[1],
    )


def listed_tests(s: ServerState, ended: int | None) -> list[TestRec]:
    """Every test, oldest first; with ``ended``, every live test and only the newest ended ones."""
    tests = list(s.tests.values())
    if ended is not None:
        done = [t for t in tests if t.state in TEST_TERMINAL]
        keep = {id(t) for t in sorted(done, key=lambda t: t.created_at)[len(done) - ended :]} if ended else set()
        tests = [t for t in tests if t.state not in TEST_TERMINAL or id(t) in keep]
    return tests


def changes(s: ServerState, since: int | None, epoch: str | None, ended: int | None) -> Changes:
    """What changed after revision ``since`` of ``epoch``, or the whole state when that cannot be
    answered exactly (no revision, another epoch, a revision too old or never given out).

    The whole state lists the tests as ``GET /tests?ended=`` does; changes list every test
    that changed, so a client keeping ``ended`` ended tests trims its own copy.
    """
    feed = s.feed
    if since is None or epoch != feed.epoch or not feed.answers(since):
        return _everything(s, ended)
    out = Changes(epoch=feed.epoch, revision=feed.revision, full=False)
    for kind, key in feed.since(since):
        if kind == "agent":
            if (a := s.agents.get(key)) is not None:
                out.agents.append(agent_out(s, a))
            else:
                out.removed_agents.append(key)
        elif kind == "provider":
            if (p := s.providers.get(key)) is not None:
                out.providers.append(provider_out(s, p))
            else:
                out.removed_providers.append(key)
        elif kind == "test":
            if (t := s.tests.get(key)) is not None:
                out.tests.append(test_out(s, t, with_containers=False))
            else:
                out.removed_tests.append(key)
        elif (c := s.containers.get(key)) is not None:
            out.containers.append(container_out(s, c))
    return out


def _everything(s: ServerState, ended: int | None) -> Changes:
    tests = listed_tests(s, ended)
    return Changes(
        epoch=s.feed.epoch,
        revision=s.feed.revision,
        full=True,
        agents=[agent_out(s, a) for a in s.agents.values()],
        providers=[provider_out(s, p) for p in providers.listed(s)],
        tests=[test_out(s, t, with_containers=False) for t in tests],
        containers=[container_out(s, c) for t in tests for c in s.containers_of(t)],
    )
