"""Deleting an ended test with everything kept for it."""

from __future__ import annotations

import logging

from octotui.server.domain import jtl
from octotui.server.domain.lifecycle import TEST_TERMINAL
from octotui.server.domain.state import ServerState
from octotui.server.errors import Conflict
from octotui.server.records import TestRec

log = logging.getLogger("octotui.server")


async def delete_test(s: ServerState, test_id: str) -> TestRec:
    """Delete an ended test: its record, its containers, their per-label figures, its timeline, its
    JTL files, its links to the files it brought (with their shares; the files themselves stay until
    an operator deletes them: ``domain/files.py``), the idempotency keys that made it and any command
    still queued for it.

    A test not ended is refused (:class:`Conflict`: stop it first). It leaves memory before the
    store is written (a flush running meanwhile must not write it back) and comes back if the
    store refuses: then nothing changed.
    """
    t = s.get_test(test_id)
    if t.state not in TEST_TERMINAL:
        raise Conflict(f"test {t.name!r} ({t.id}) is {t.state}: stop it first (only an ended test can be deleted)")
    containers = {cid: c for cid in t.container_ids if (c := s.containers.get(cid)) is not None}
    books = {cid: book for cid in containers if (book := s.labels.get(cid)) is not None}
    unsaved_labels = s.labels_unsaved & containers.keys()
    series = s.series.take(t.id)
    del s.tests[t.id]
    s.unsaved.tests.discard(t.id)
    for cid, c in containers.items():
        del s.containers[cid]
        s.labels.pop(cid, None)
        s.live.get(c.agent_id, set()).discard(cid)  # ended: none should be live
    s.unsaved.containers -= containers.keys()
    s.labels_unsaved -= containers.keys()
    new_commands = [m for m in s.unsaved.new_commands if m.test_id == t.id]
    s.unsaved.new_commands = [m for m in s.unsaved.new_commands if m.test_id != t.id]
    try:
        await s.store.delete_test(t.id)
    except BaseException:
        s.tests[t.id] = t
        s.containers.update(containers)
        s.labels.update(books)
        s.labels_unsaved |= unsaved_labels
        s.unsaved.new_commands.extend(new_commands)
        if series is not None:
            s.series.give_back(t.id, series)
        raise
    for agent_id in {c.agent_id for c in containers.values()}:
        for cmd in s.commands.pending(agent_id):
            if cmd.test_id == t.id:
                s.commands.remove(agent_id, cmd.id)
        if (asks := s.labels_wanted.get(agent_id)) is not None:
            for cid in containers:
                asks.pop(cid, None)
    s.launch_keys.forget_test(t.id)
    s.feed.remove("test", t.id)
    await jtl.remove_files(s, t.id)
    kept = f"; its files kept: {', '.join(u.file_id for u in t.files)}" if t.files else ""
    log.info("test %s (%s) deleted with its %d container(s) and their results%s", t.name, t.id, len(containers), kept)
    return t
