"""The periodic work: agent health, containers of offline agents lost, live tests sampled, and the
background loop that also flushes the store, retires agents, keeps the tokens in step and deletes
JTLs past their retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time

from octotui.server.domain import (
    agents,
    alarms,
    clock,
    commands,
    criteria,
    jtl,
    lifecycle,
    monitors,
    operators,
    persistence,
    saturation,
    series,
    seriesshare,
    stopping,
)
from octotui.server.domain.state import ServerState

log = logging.getLogger("octotui.server")

#: Seconds between two points of a live test's series.
POINT_EVERY = 1.0
#: Seconds between writes of agents' last heartbeat times, and between prunes of old idempotency keys.
LAST_SEEN_EVERY = 30.0
KEYS_PRUNED_EVERY = 3600.0


#: How an agent's status ranks: a replica cut from the others only ever raises it (below).
_RANK = {"online": 2, "late": 1, "offline": 0}


def sweep_health(s: ServerState, now: float) -> None:
    """Take each agent's status from the age of its last heartbeat. A replica cut from the others
    (``Replica.cut``: PostgreSQL away) does not see the heartbeats they take, so it calls no agent
    late or offline meanwhile (once the exchange is back, each gets a grace: ``replica/core.py``)."""
    cut = s.replica is not None and s.replica.cut
    for a in s.agents.values():
        status = agents.status(s, a, now)
        if cut and _RANK.get(status, 0) < _RANK.get(a.status, 0):
            continue
        if status != a.status:
            log.info("agent %s (%s) is %s", a.name, a.id, status)
            a.status = status
            s.feed.touch("agent", a.id)


def leads(s: ServerState) -> bool:
    """True when this server does the background duties: alone, or holding the replicas' lease."""
    return s.replica is None or s.replica.leader


def tick(s: ServerState) -> None:
    """Recompute agent health, mark containers of offline agents lost, sample live tests (the last
    two on one replica only: the lease holder's, ``replica.py``)."""
    now = clock.now()
    sweep_health(s, now)
    if not leads(s):
        monitors.refresh(s)
        return
    for a in s.agents.values():
        if now - a.health_ref >= s.settings.offline_after and s.live.get(a.id):
            for cid in list(s.live[a.id]):
                c = s.containers[cid]
                for cmd in s.commands.pending(a.id):
                    if cmd.container_id == cid:
                        commands.withdraw(s, a.id, cmd.id)
                lifecycle.set_state(s, c, "lost", f"agent {a.name} went offline")
    if now - s.last_point >= POINT_EVERY:
        s.last_point = now
        _sample_tests(s, now)
        saturation.sweep(s)
    monitors.refresh(s)  # tests naming monitors started or ended: their agents' assignments follow


def _sample_tests(s: ServerState, now: float) -> None:
    """A point of each live test's series; tests waiting or stopping brought up to date."""
    for t in list(s.tests.values()):
        if t.state in lifecycle.TEST_TERMINAL:
            continue
        cs = s.containers_of(t)
        if all(c.state in lifecycle.TERMINAL for c in cs):
            lifecycle.update_test(s, t)  # waiting for lost containers' agents: ends when the wait is over
            continue
        if t.state == "stopping":
            lifecycle.update_test(s, t)  # its reason names the stops not confirmed in time
        held = t.criteria and t.state == "running" and not t.stop_requested
        if held and (broken := criteria.watch(s, t, now)) is not None:
            stopping.stop_test(s, t, f"{lifecycle.CRITERION_STOP} {broken.expr!r} ({broken.detail})")
            continue
        if t.state != "pending" and any(c.figures is not None for c in cs) and series.leading(s):
            series.sample(s, t, cs, now)


async def run_background(s: ServerState, stop: asyncio.Event) -> None:
    """Health ticks and coalesced store writes until ``stop`` is set; a failure is logged, not fatal
    (an unavailable store in a few lines: ``persistence.Outage``).
        On PostgreSQL, this server is a replica among others (``replica.py``) while it runs."""
    from octotui.server import replica

    s.replica = await replica.start(s)
    try:
        await _run_background(s, stop)
    finally:
        try:
            # The last writes while this replica still holds the lease: written after letting it go,
            # they could overwrite what a new holder saved meanwhile (its tests' timelines).
            await persistence.final_write(s)  # PostgreSQL down: says what was not written, ends cleanly
        finally:
            if s.replica is not None:
                await s.replica.stop()


async def _run_background(s: ServerState, stop: asyncio.Event) -> None:
    interval = max(0.1, min(1.0, s.settings.late_after / 5, s.settings.flush_interval))
    last_seen_saved = keys_pruned = checkpointed = time.monotonic()
    jtls_pruned = float("-inf")  # at start, then every jtl_prune_interval
    outage = persistence.Outage()
    while not stop.is_set():
        try:
            await seriesshare.follow(s)  # tests' timelines across replicas: taken over with the lease
            tick(s)
            await persistence.flush(s)
            await alarms.save(s)
            if leads(s):
                await agents.retire(s)
            await operators.sync(s)
            if time.monotonic() - last_seen_saved >= LAST_SEEN_EVERY:
                last_seen_saved = time.monotonic()
                await persistence.save_last_seen(s)
            if time.monotonic() - checkpointed >= s.settings.checkpoint_interval:
                checkpointed = time.monotonic()
                await s.store.checkpoint()
            if leads(s) and time.monotonic() - keys_pruned >= KEYS_PRUNED_EVERY:
                keys_pruned = time.monotonic()
                await s.store.forget_launch_keys(clock.now() - s.settings.idempotency_ttl)
                if s.replica is not None:
                    await s.replica.duties()
            if leads(s) and time.monotonic() - jtls_pruned >= s.settings.jtl_prune_interval:
                jtls_pruned = time.monotonic()
                await jtl.prune(s)
        except sqlite3.OperationalError as exc:  # the store cannot be written now (pgstore.StoreUnavailable…)
            outage.failed(s, exc)
        except Exception:
            log.exception("background work failed; retrying")
        else:
            outage.worked()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
