"""Coalesced store writes: tests, containers and commands changed since the last flush, in one
transaction; agents' last heartbeat times now and then (a heartbeat that changes no state writes nothing).
While the store cannot be written (PostgreSQL stopped, SQLite locked) everything stays in memory for
the next flush; :class:`Outage` says so in a few lines, :func:`final_write` at shutdown."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable

from octotui.server.domain import alarms, labels, series
from octotui.server.domain.state import ServerState, Unsaved
from octotui.server.records import CommandRec, ContainerRec, TestRec

log = logging.getLogger("octotui.server")


async def flush(s: ServerState, all_labels: bool = False) -> None:
    """Write the tests, containers and commands changed since the last flush (the per-label
    figures and timelines first, every changed one with ``all_labels``: see ``labels.save``).

    A write the store refuses as a whole (disk full, locked) keeps every change unsaved for the
    next flush. A record that cannot be written (a value the store refuses) does not hold the
    others back: they are written one by one, the bad one is logged and left out.
    """
    # Labels before the state: a test stored as ended has its final labels stored.
    await labels.save(s, everything=all_labels)
    await series.save(s, everything=all_labels)
    if not s.unsaved:
        return
    batch, s.unsaved = s.unsaved, Unsaved()
    tests = [s.tests[i] for i in batch.tests if i in s.tests]
    containers = [s.containers[i] for i in batch.containers if i in s.containers]
    try:
        await s.store.save_changes(tests, containers, batch.new_commands, batch.done_commands)
    except sqlite3.OperationalError:
        _keep(s, Unsaved(batch.tests, batch.containers, batch.new_commands, batch.done_commands))
        raise
    except Exception as exc:
        log.warning(
            "store write of %d change(s) refused (%s): writing them one by one",
            len(tests) + len(containers) + len(batch.new_commands),
            exc,
        )
        await _flush_one_by_one(s, tests, containers, batch.new_commands, batch.done_commands)


def _keep(s: ServerState, batch: Unsaved) -> None:
    """Put a batch the store refused back, before the changes made since."""
    s.unsaved.tests |= batch.tests
    s.unsaved.containers |= batch.containers
    s.unsaved.new_commands[:0] = batch.new_commands
    s.unsaved.done_commands[:0] = batch.done_commands


async def _flush_one_by_one(
    s: ServerState, tests: list[TestRec], containers: list[ContainerRec], new: list[CommandRec], done: list[str]
) -> None:
    save = s.store.save_changes
    writes: list[tuple[str, str, Callable[[], Awaitable[None]]]] = [
        *(("test", t.id, functools.partial(save, [t], [])) for t in tests),
        *(("container", c.id, functools.partial(save, [], [c])) for c in containers),
        *(("command", m.id, functools.partial(save, [], [], [m])) for m in new),
    ]
    for i, (kind, key, write) in enumerate(writes):
        try:
            await write()
        except sqlite3.OperationalError:
            rest = writes[i:]
            _keep(
                s,
                Unsaved(
                    {k for kd, k, _ in rest if kd == "test"},
                    {k for kd, k, _ in rest if kd == "container"},
                    [m for m in new if any(kd == "command" and k == m.id for kd, k, _ in rest)],
                    done,
                ),
            )
            raise
        except Exception as exc:
            log.error("%s %s cannot be stored, left out of the store until it changes: %s", kind, key, exc)
    try:
        await save([], [], [], done)
    except sqlite3.OperationalError:
        _keep(s, Unsaved(done_commands=done))
        raise


async def save_last_seen(s: ServerState) -> None:
    """Persist agents' last heartbeat times (now and then, never per heartbeat)."""
    ids, s.seen_unsaved = s.seen_unsaved, set()
    rows = [(s.agents[i].last_seen, i) for i in ids if i in s.agents]
    if rows:
        try:
            await s.store.save_last_seen(rows)
        except sqlite3.Error:
            s.seen_unsaved |= ids  # kept for the next time (heartbeats since only add to it)
            raise


#: Seconds between two reminders that the store is still unavailable.
REMIND_EVERY = 60.0
#: Seconds the shutdown waits for an unavailable store to come back (PostgreSQL restarting) before
#: it gives up on what is not written (a restart re-reads only what the store holds).
SHUTDOWN_WAIT = 5.0
RETRY_EVERY = 1.0


def pending(s: ServerState) -> dict[str, int]:
    """What is changed in memory and not written yet, counted by kind (kinds with none left out)."""
    counts = {
        "test(s)": len(s.unsaved.tests),
        "container(s)": len(s.unsaved.containers),
        "command(s)": len(s.unsaved.new_commands) + len(s.unsaved.done_commands),
        "containers' labels": len(s.labels_unsaved),
        "tests' timelines": len(s.series.dirty | s.timelines.dirty),
        "alarm(s)": len(s.monitors.unsaved_alarms),
        "monitor series": len(s.monitors.series_unsaved),
        "agent last-seen time(s)": len(s.seen_unsaved),
    }
    return {kind: n for kind, n in counts.items() if n}


def said(counts: dict[str, int]) -> str:
    """``pending``'s counts in words: "2 test(s), 1 container(s)" (or "nothing")."""
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing"


class Outage:
    """The background loop's view of the store: one line when it becomes unavailable (with the
    reason), a reminder at most every ``REMIND_EVERY`` s while it stays so, one line when it is back
    (instead of a traceback per iteration)."""

    def __init__(self, remind_every: float = REMIND_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.remind_every = remind_every
        self.clock = clock
        self.since: float | None = None
        self._told = 0.0

    def failed(self, s: ServerState, exc: sqlite3.Error) -> None:
        now = self.clock()
        if self.since is None:
            self.since = self._told = now
            log.error("store unavailable: %s; changes are kept in memory and written when it is back", exc)
        elif now - self._told >= self.remind_every:
            self._told = now
            log.warning(
                "store still unavailable after %.0f s: %s; not written yet: %s", now - self.since, exc, said(pending(s))
            )

    def worked(self) -> None:
        if self.since is not None:
            log.info(
                "store available again after %.0f s: the changes kept meanwhile are written",
                self.clock() - self.since,
            )
            self.since = None


async def final_write(s: ServerState, wait: float = SHUTDOWN_WAIT) -> dict[str, int]:
    """The shutdown's last writes: every change, the labels, timelines and alarms, the agents' last
    heartbeat times. An unavailable store is tried again for up to ``wait`` s; what is still not
    written then is named in one line (a restart re-reads the store as it was last written; the agents'
    next heartbeats bring their containers' states back). Never raises a store error; returns the
    counts not written (empty when all was)."""
    deadline = time.monotonic() + wait
    while True:
        error: Exception | None = None
        for write in (
            functools.partial(flush, s, True),
            functools.partial(alarms.save, s, True),
            functools.partial(save_last_seen, s),
        ):
            try:
                await write()
            except (sqlite3.Error, ValueError) as exc:  # each part tried, whatever an earlier one met
                error = exc
        left = pending(s)
        if error is None or not left:
            return left
        if not isinstance(error, sqlite3.OperationalError) or time.monotonic() + RETRY_EVERY > deadline:
            log.error(
                "store unavailable at shutdown: %s; NOT written: %s (a restart re-reads the store as it was"
                " last written; agents' next heartbeats report their containers again)",
                error,
                said(left),
            )
            return left
        await asyncio.sleep(RETRY_EVERY)
