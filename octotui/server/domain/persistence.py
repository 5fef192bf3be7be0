"""Coalesced store writes: tests, containers and commands changed since the last flush, in one
transaction; agents' last heartbeat times now and then (a heartbeat that changes no state writes nothing)."""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable

from octotui.server.domain import labels, series
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
        await s.store.save_last_seen(rows)
