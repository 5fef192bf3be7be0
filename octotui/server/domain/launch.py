"""Launching a test: the plan checked, the containers placed evenly over the agents that fit, one
launch queued per container, and ``Idempotency-Key``s so that a retried launch never starts twice."""

from __future__ import annotations

import contextlib
import hashlib
import logging

from octotui.protocol import LaunchSpec, Placement, PlacementItem, Test, TestCreate
from octotui.server.domain import agents, clock, commands, criteria, files, lifecycle, monitors, providers, views
from octotui.server.domain.state import ServerState, new_id
from octotui.server.errors import Conflict, Invalid, TooLarge
from octotui.server.jmx import PlanError, validate_plan
from octotui.server.placement import Candidate, PlacementError, place, skipped
from octotui.server.records import CommandRec, ContainerRec, ProviderRec, TestRec
from octotui.server.store import LaunchKeyTaken

log = logging.getLogger("octotui.server")

#: Where containers go: (candidate, how many), as :func:`~octotui.server.placement.place` answers.
Spread = list[tuple[Candidate, int]]


async def create_test(
    s: ServerState, spec: TestCreate, idempotency_key: str | None = None
) -> tuple[Test | Placement, bool]:
    """Validate, place and (unless a dry run) queue one launch per container; True with the
    test an earlier launch with the same ``idempotency_key`` made (its answer was lost)."""
    if idempotency_key is None or spec.dry_run:
        async with s.launching, _across(s, not spec.dry_run):  # placement and ports see every earlier launch
            return await _create_test(s, spec, None), False
    keys = s.launch_keys
    key = (idempotency_key, hashlib.sha256(spec.model_dump_json().encode()).hexdigest())
    seen = keys.get(idempotency_key)
    if seen is not None:
        if seen[0] != key[1]:
            raise Invalid("this Idempotency-Key was used for another launch: use a new key")
        if seen[1] is None:
            raise Conflict("a launch with this Idempotency-Key is under way: wait for its answer")
        if (made := s.tests.get(seen[1])) is not None:
            return views.test_out(s, made), True
    keys.begin(*key)
    try:
        async with s.launching, _across(s):
            return await _create_test(s, spec, key), False
    except LaunchKeyTaken as taken:
        # Another replica made a test with this key meanwhile (the store's check, in the write's
        # transaction, decides between them): its test is the answer, as it would be here.
        keys.forget(idempotency_key)
        if taken.fingerprint != key[1]:
            raise Invalid("this Idempotency-Key was used for another launch: use a new key") from None
        keys.done(*key, taken.test_id)
        made = s.tests.get(taken.test_id)
        if made is None and s.replica is not None:
            made = await s.replica.fetch_test(taken.test_id)
        if made is None:
            raise Conflict("a launch with this Idempotency-Key is under way: wait for its answer") from None
        return views.test_out(s, made), True
    except BaseException:
        if keys.get(idempotency_key) == (key[1], None):
            keys.forget(idempotency_key)  # refused before anything was made: the key may be used again
        raise


def _across(s: ServerState, launches: bool = True) -> contextlib.AbstractAsyncContextManager[None]:
    """With replicas, the launch lock they share (``replica.py``): placement sees their launches too."""
    if s.replica is None or not launches:
        return contextlib.nullcontext()
    return s.replica.launching()


def _check_plan(s: ServerState, plan: str) -> None:
    if len(plan.encode()) > s.settings.max_plan_bytes:
        raise TooLarge(f"the plan is larger than the limit of {s.settings.max_plan_bytes} bytes")
    try:
        validate_plan(plan)
    except PlanError as exc:
        raise Invalid(f"invalid plan: {exc}") from None


def _place(s: ServerState, spec: TestCreate) -> tuple[ProviderRec, Spread, Placement]:
    p = providers.find(s, spec.provider)
    try:
        spread = place(
            candidates(s, p.id),
            spec.containers,
            locations=spec.locations,
            memory_per_container=s.settings.container_memory,
            cpu_per_container=s.settings.container_cpu,
        )
    except PlacementError as exc:
        raise Conflict(f"provider {p.name!r}: {exc}") from None
    placement = Placement(
        provider=p.id,
        provider_name=p.name,
        containers=spec.containers,
        items=[PlacementItem(agent=a.id, agent_name=a.name, location=a.location, containers=n) for a, n in spread],
        skipped=skipped(candidates(s, p.id), spec.locations),
    )
    return p, spread, placement


async def _create_test(s: ServerState, spec: TestCreate, launch_key: tuple[str, str] | None) -> Test | Placement:
    """``launch_key``: (Idempotency-Key, request fingerprint), stored with the test in its one
    transaction: both are made, or neither (then the key may be used again)."""
    _check_plan(s, spec.plan)
    judged = criteria.parse_all(spec.criteria)  # 422 naming the criterion and position: nothing made
    for want in spec.files:  # with replicas: uploaded through another, or deleted there meanwhile
        await files.refresh(s, want.id)
    chosen = files.check(s, spec)
    named = monitors.check_test(s, spec.monitors, spec.stop_on_critical)
    p, spread, placement = _place(s, spec)
    if spec.dry_run:
        return placement
    properties = dict(spec.properties)
    for key, value in (("users", spec.users), ("duration", spec.duration), ("rampup", spec.rampup)):
        if value is not None:
            properties[key] = str(value)
    t = TestRec(
        id=new_id("t"),
        name=spec.name,
        provider_id=p.id,
        provider_name=p.name,
        locations=list(spec.locations or []),
        image=spec.image or s.settings.default_image,
        properties=properties,
        plan=spec.plan,
        state="pending",
        created_at=clock.now(),
    )
    t.files = await files.uses(s, spec, chosen)
    t.criteria = judged
    containers, queued = _containers(s, t, spread, spec.containers)
    # Written first, published after: a refused write leaves nothing behind in memory.
    await s.store.create_test(t, containers, queued, launch_key)
    s.tests[t.id] = t
    for c in containers:
        s.containers[c.id] = c
        s.live.setdefault(c.agent_id, set()).add(c.id)
        lifecycle.touch_container(s, c)
        s.feed.touch("agent", c.agent_id)
    for cmd in queued:
        s.commands.push(cmd)
    if launch_key is not None:
        s.launch_keys.done(*launch_key, t.id)
    await monitors.attach(s, t.id, named, spec.stop_on_critical)  # the monitors it names start
    log.info("test %s (%s): %d container(s) queued on %d agent(s)", t.name, t.id, len(containers), len(spread))
    return views.test_out(s, t)


def _containers(s: ServerState, t: TestRec, spread: Spread, count: int) -> tuple[list[ContainerRec], list[CommandRec]]:
    """The container records of a new test and their launches, each with its own shutdown port."""
    used = {s.containers[cid].shutdown_port for ids in s.live.values() for cid in ids}
    port = s.settings.shutdown_port_base
    containers: list[ContainerRec] = []
    launches: list[CommandRec] = []
    for candidate, n in spread:
        for _ in range(n):
            while port in used or port == s.settings.port:
                port += 1
            used.add(port)
            c = ContainerRec(
                id=new_id("c"),
                test_id=t.id,
                agent_id=candidate.id,
                index=len(containers),
                state="pending",
                shutdown_port=port,
                updated_at=t.created_at,
            )
            containers.append(c)
            t.container_ids.append(c.id)
            spec = LaunchSpec(
                test_id=t.id,
                container_id=c.id,
                image=t.image,
                plan=t.plan,
                properties=t.properties,
                shutdown_port=port,
                index=c.index,
                count=count,
                files=files.launch_files(s, t, candidate.id, c.index),
            )
            launches.append(commands.make(candidate.id, "launch", c, spec))
    return containers, launches


def candidates(s: ServerState, provider_id: str) -> list[Candidate]:
    """The agents of a provider as placement sees them (retiring ones left out)."""
    now = clock.now()
    out = []
    for a in s.agents.values():
        if a.provider_id != provider_id or a.retiring:
            continue
        states = [s.containers[cid].state for cid in s.live.get(a.id, ())]
        reserved = sum(1 for state in states if state in lifecycle.RESERVED)
        host = a.host
        out.append(
            Candidate(
                id=a.id,
                name=a.name,
                location=a.location,
                online=agents.status(s, a, now) == "online",
                docker=bool(a.docker and a.docker.available),
                cpu_count=max(1, len(host.cpu_per_core) if host and host.cpu_per_core else a.cpu_count),
                cpu_percent=s.hosts.mean_cpu(a.id) or 0.0,
                memory_total=(host.memory_total if host and host.memory_total else a.memory_total),
                memory_percent=host.memory_percent if host else 0.0,
                reserved=reserved,
                running=len(states) - reserved,
                drained=a.drained,
            )
        )
    return out
