"""Per-label figures and error counts of each container, as its agent reports them (each label
cumulative since the container started, only the labels changed since the last heartbeat the
server answered), merged over a test's containers: live while it runs, final after.

Where they live: in memory (``state.labels``, one :class:`LabelBook` per container) while the
container's test has not ended; in the store (``container_labels``, one row per container and
label), written on changes only: a container's changed labels at the first flush after it or its
test ended, the changed labels of live containers every ``labels_save_interval`` (the agent does not
send a label again until it changes, so a restart mid-test takes the stored ones back) and all of
them at shutdown. Once a test ended and its labels are stored they leave memory, and reading them
reads the store (with whatever arrived since laid over it).

With replicas, the labels reported through one replica reach the others' books within about a second
(``replica/live.py``): the lease holder's criteria and series, and every replica's reads, see them
all; each is stored by the replica it was reported to.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from octotui.protocol import ContainerReport, ErrorFigures, Heartbeat, LabelFigures
from octotui.server.domain.lifecycle import TERMINAL, TEST_TERMINAL
from octotui.server.domain.state import ServerState
from octotui.server.labelbook import LabelBook, merge_errors, merge_labels
from octotui.server.records import ContainerRec, TestRec
from octotui.server.tables import LabelRow

log = logging.getLogger("octotui.server")


def take(s: ServerState, c: ContainerRec, r: ContainerReport) -> None:
    """Fold a report's labels and error counts into its container's book; a change shows the
    test in the change feed (the dashboard reads the labels again) and is stored in time."""
    if not r.labels and not r.errors:
        return
    book = s.labels.get(c.id)
    if book is None:
        book = s.labels[c.id] = LabelBook()
    if s.replica is not None and book.outgoing is None:
        book.outgoing = set()  # the labels reported here go to the other replicas (``replica/live.py``)
    changed, refused = book.take(r.labels, r.errors)
    if refused:
        log.warning("container %s: label figures left as they were: %s", c.id, "; ".join(refused))
    if changed:
        s.labels_unsaved.add(c.id)
        s.feed.touch("test", c.test_id)
        if s.replica is not None:
            s.replica.live.labels_out.add(c.id)


#: Heartbeat answers that ask for a container's every label before the server gives up asking (an
#: agent older than ``labels_wanted``, or a container without any label, never answers with labels).
WANTED_ASKS = 5


def wanted(s: ServerState, agent_id: str, hb: Heartbeat) -> list[str]:
    """The containers of ``agent_id`` whose every label the server asks for in this heartbeat's answer.

    After a start, the server holds the labels of containers of tests under way only as last stored
    (up to ``labels_save_interval`` old), and an agent sends a label again only when it changes: so
    it asks, in each answer to that agent, for every label of those containers (``state.labels_wanted``,
    filled at start-up), until a report with labels arrives after an ask (the answer: the agent then
    sends them all, spread over as many heartbeats as it needs), at most :data:`WANTED_ASKS` times,
    and never once the container's test ended (its labels are final and stored).
    Containers launched since the start are never asked for: every report of theirs came here.
    """
    asks = s.labels_wanted.get(agent_id)
    if asks is None:  # the usual case: one dict lookup on the hot path
        return []
    for r in hb.containers:
        if (r.labels or r.errors) and asks.get(r.container_id, 0) > 0:
            del asks[r.container_id]  # answered
    out = []
    for cid, n in list(asks.items()):
        c = s.containers.get(cid)
        t = s.tests.get(c.test_id) if c is not None else None
        if t is None or t.state in TEST_TERMINAL:
            del asks[cid]
        elif n >= WANTED_ASKS:
            del asks[cid]
            log.info("container %s: its agent sent no labels after %d asks; asking no more", cid, n)
        else:
            asks[cid] = n + 1
            out.append(cid)
    if not asks:
        del s.labels_wanted[agent_id]
    return out


def load(s: ServerState, rows: list[LabelRow]) -> None:
    """Take the stored labels of the tests not ended back into memory (start-up)."""
    for container_id, label, _, figures, errors in rows:
        s.labels.setdefault(container_id, LabelBook()).put_row(label, figures, errors)


def _ended(s: ServerState, container_id: str) -> bool:
    """True when a container, or its test, ended (or is gone): its labels are final."""
    c = s.containers.get(container_id)
    if c is None or c.state in TERMINAL:
        return True
    t = s.tests.get(c.test_id)
    return t is None or t.state in TEST_TERMINAL


def _test_ended(s: ServerState, container_id: str) -> bool:
    c = s.containers.get(container_id)
    t = s.tests.get(c.test_id) if c is not None else None
    return t is None or t.state in TEST_TERMINAL


async def save(s: ServerState, everything: bool = False) -> None:
    """Store the changed labels of the containers that ended, and every changed label when
    ``everything`` or when ``labels_save_interval`` passed; then forget those of ended tests.

    A write the store refuses as a whole (disk full, locked) keeps them unsaved for the next time.
    """
    now = time.monotonic()
    if everything or now - s.labels_saved_at >= s.settings.labels_save_interval:
        s.labels_saved_at = now
        everything = True
    due = [cid for cid in s.labels_unsaved if everything or _ended(s, cid)]
    taken: list[tuple[str, set[str]]] = []
    rows: list[LabelRow] = []
    for cid in due:
        s.labels_unsaved.discard(cid)
        book = s.labels.get(cid)
        c = s.containers.get(cid)
        if book is None or c is None:
            continue
        # Taken out before the write: labels reported while it runs stay unsaved.
        dirty, book.dirty = book.dirty, set()
        taken.append((cid, dirty))
        rows.extend((cid, label, c.test_id, *book.row(label)) for label in dirty)
    if rows:
        try:
            await s.store.save_labels(rows)
        except sqlite3.OperationalError:
            for cid, dirty in taken:
                if (book := s.labels.get(cid)) is not None:
                    book.dirty |= dirty
                    s.labels_unsaved.add(cid)
            raise
        except Exception as exc:
            log.error("labels of %d container(s) cannot be stored, left out until they change: %s", len(taken), exc)
    # Ended tests' labels leave memory once stored (reads then read the store).
    ids = list(s.labels) if everything else [cid for cid, _ in taken]
    for cid in ids:
        book = s.labels.get(cid)
        if book is not None and not book.dirty and _test_ended(s, cid):
            del s.labels[cid]


async def books(s: ServerState, t: TestRec) -> list[LabelBook]:
    """The labels of a test's containers: from memory while it runs; once ended, from the store
    with what memory holds (newer) laid over it."""
    if t.state not in TEST_TERMINAL:
        return [book for cid in t.container_ids if (book := s.labels.get(cid)) is not None]
    stored: dict[str, LabelBook] = {}
    for cid, label, _, figures, errors in await s.store.labels_of(t.id):
        stored.setdefault(cid, LabelBook()).put_row(label, figures, errors)
    for cid in t.container_ids:
        if (mem := s.labels.get(cid)) is None:
            continue
        book = stored.setdefault(cid, LabelBook())
        book.figures.update(mem.figures)
        for label, counts in mem.errors.items():
            book.errors.setdefault(label, {}).update(counts)
    return list(stored.values())


async def figures(s: ServerState, t: TestRec) -> list[LabelFigures]:
    """Each label of ``t`` merged over its containers, sorted by label."""
    return merge_labels(book.figures for book in await books(s, t))


async def errors(s: ServerState, t: TestRec) -> list[ErrorFigures]:
    """Error counts of ``t`` per label, code and message, most frequent first."""
    return merge_errors(book.errors for book in await books(s, t))
