"""Fleet care: agents of another version than the server's, two identities on one machine, and
agents drained by an operator (no new containers; the running ones finish), for upgrades:
drain, wait for its containers to end, replace the agent keeping its state dir (its identity),
undrain. Drained survives a restart of the server and of the agent."""

from __future__ import annotations

import logging
import re
import sqlite3

from octotui.protocol import VERSION
from octotui.server.domain.state import ServerState
from octotui.server.errors import Conflict
from octotui.server.records import AgentRec

log = logging.getLogger("octotui.server")

_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(.*)", re.DOTALL)
#: What may follow the release numbers: pre-, post- and dev-release segments (PEP 440's spellings).
_SUFFIX = re.compile(r"(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview|post|rev|r|dev)[-_.]?\d*)*")
_POST = re.compile(r"[-_.]?(?:post|rev|r)(?![a-z])")
_LOCAL = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*", re.IGNORECASE)

#: Sorts a version: its release numbers, then a release after its pre-releases (``1.0rc1 < 1.0``).
VersionKey = tuple[tuple[int, ...], int]


def version_key(version: str) -> VersionKey | None:
    """A version as it sorts (PEP 440's release segment and pre-release rule, enough for ours):
    ``0.10.0 > 0.9.1``, ``1.0 == 1.0.0``, ``1.0.0rc1 < 1.0.0``; a local part (``+build``) is ignored.
    None when it is not a version at all (``dev``, empty)."""
    m = _VERSION.fullmatch(version.strip(" "))
    if m is None:
        return None
    rest, plus, local = m.group(2).partition("+")
    rest = rest.lower()
    if not _SUFFIX.fullmatch(rest) or (plus and not _LOCAL.fullmatch(local)):
        return None  # not a version PEP 440 knows (e.g. "1\ufffd"): nothing to compare
    numbers = [int(x) for x in m.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    # .postN sorts after the release; a pre-release (aN, bN, rcN) or a devN before it
    return tuple(numbers), (2 if _POST.match(rest) else 1 if not rest else 0)


def check_version(version: str) -> None:
    """Refuse an agent newer than the server (:class:`Conflict` naming both versions): it may speak
    a contract this server does not know. Older agents are taken and flagged ``outdated``."""
    theirs, ours = version_key(version), version_key(VERSION)
    if theirs is not None and ours is not None and theirs > ours:
        raise Conflict(
            f"agent version {version} is newer than this server's version {VERSION}: upgrade the server "
            f"first, or run an agent of version {VERSION}"
        )


def outdated(a: AgentRec) -> bool:
    """Reports an older version than the server's."""
    theirs, ours = version_key(a.version), version_key(VERSION)
    return theirs is not None and ours is not None and theirs < ours


def count_machine(s: ServerState, a: AgentRec, step: int) -> None:
    """Count agents per machine id; the agents of a machine that becomes or stops being shared change."""
    if not a.machine_id:
        return
    key = a.machine_id
    count = s.machines.get(key, 0) + step
    if count > 0:
        s.machines[key] = count
    else:
        s.machines.pop(key, None)
    if (count == 2 and step > 0) or (count == 1 and step < 0):
        for x in s.agents.values():
            if x.machine_id == key:
                s.feed.touch("agent", x.id)


def duplicate_machine(s: ServerState, a: AgentRec) -> bool:
    return bool(a.machine_id) and s.machines.get(a.machine_id or "", 0) > 1


def set_machine(s: ServerState, a: AgentRec, machine_id: str | None) -> None:
    """The machine id an agent reports now (kept when it reports none: an older agent binary)."""
    if machine_id is None or machine_id == a.machine_id:
        return
    if a.id in s.agents:
        count_machine(s, a, -1)
    a.machine_id = machine_id
    if a.id in s.agents:
        count_machine(s, a, +1)


async def save(s: ServerState, a: AgentRec) -> None:
    """Write the agent's fleet columns (drained, machine id) beside what ``store.save_agent`` writes.

    The store's ``save_agent`` predates these columns; until it writes them itself, they are
    written here in its worker thread, in a transaction of their own.
    """
    store = s.store
    row = (int(a.drained), a.machine_id, a.id)

    def run(db: sqlite3.Connection) -> None:
        db.execute("UPDATE agents SET drained = ?, machine_id = ? WHERE id = ?", row)

    await store._run(store._tx, run)


async def drain(s: ServerState, agent_id: str, drained: bool) -> tuple[AgentRec, bool]:
    """Drain (or undrain) an agent; True when that changed it (asked again: nothing to do).

    A drained agent gets no new containers (placement skips it, and says so); the containers
    it runs finish. Stored at once: it stays drained over restarts until undrained."""
    a = s.get_agent(agent_id)
    if a.drained == drained:
        return a, False
    a.drained = drained
    try:
        await save(s, a)
    except BaseException:
        a.drained = not drained
        raise
    s.feed.touch("agent", a.id)
    log.info("agent %s (%s) %s", a.name, a.id, "drained: no new containers" if drained else "undrained")
    return a, True
