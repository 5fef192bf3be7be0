"""Monitors of the servers under test: created, changed and deleted by operators (checked first, so a
refusal changes nothing), shown without their credentials, assigned to the agent that runs them
(with their credentials, decrypted only then), and fed by that agent's heartbeats.

The server never reaches a monitor's target: only its agent does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from typing import Any

from octotui.protocol import TERMINAL_TEST_STATES
from octotui.protocol.monitors import (
    Monitor,
    MonitorAssignment,
    MonitorCreate,
    MonitorCredentials,
    MonitorMetrics,
    MonitorReport,
    MonitorSample,
    MonitorUpdate,
    Threshold,
)
from octotui.server.domain import alarms, clock
from octotui.server.domain.monitorchecks import check, check_place, endpoint
from octotui.server.domain.state import ServerState, new_id
from octotui.server.domain.views import dt
from octotui.server.errors import Conflict, Invalid, NotFound
from octotui.server.monitorbook import AlarmRec, MetricLine, MonitorRec
from octotui.server.secrets import SecretUnavailable
from octotui.server.store_monitors import MonitorRow

log = logging.getLogger("octotui.server")

#: The error of a monitor whose agent was deleted: kept (its settings, thresholds and alarms' history),
#: run by none and named by no new test, until it is moved to another agent or deleted.
AGENT_DELETED = "agent deleted: move the monitor to another agent (PATCH agent) or delete it"

_NOT_NULL = ("name", "agent", "target", "interval", "metrics", "thresholds", "mode", "insecure")


def _cred_values(c: MonitorCredentials | None) -> dict[str, Any]:
    return {} if c is None else c.model_dump(exclude_none=True)


# --- create, update, delete -------------------------------------------------------------------


def _spec(body: MonitorCreate | dict[str, Any]) -> dict[str, Any]:
    d = body if isinstance(body, dict) else body.model_dump(by_alias=True)
    return {
        "target": d["target"],
        "interval": d["interval"],
        "timeout": d.get("timeout"),
        "metrics": list(d.get("metrics") or []),
        "thresholds": [Threshold.model_validate(t).model_dump(by_alias=True) for t in d.get("thresholds") or []],
        "mode": d.get("mode") or "always",
        "match": d.get("match"),
        "insecure": bool(d.get("insecure")),
    }


def _row(m: MonitorRec) -> MonitorRow:
    return (m.id, m.name, m.agent_id, m.kind, json.dumps(m.spec), m.credentials, m.created_at, m.updated_at)


async def _store(s: ServerState, m: MonitorRec) -> None:
    try:
        await s.store.save_monitor(_row(m))
    except sqlite3.IntegrityError:
        raise Conflict(f"a monitor called {m.name!r} exists already") from None


async def create(s: ServerState, body: MonitorCreate) -> MonitorRec:
    spec = _spec(body)
    values = _cred_values(body.credentials)
    check(s, spec, body.kind, body.agent, set(values))
    check_place(s, body.name, body.agent, None)
    now = clock.now()
    monitor_id = new_id("m")
    spec["credentials_set"] = sorted(values)
    blob = s.vault.encrypt(monitor_id, values) if values else None
    m = MonitorRec(monitor_id, body.name, body.agent, body.kind, spec, blob, now, now)
    m.rules = [Threshold.model_validate(t) for t in spec["thresholds"]]
    await _store(s, m)
    s.monitors.by_id[m.id] = m
    refresh(s, force=True)
    log.info("monitor %s (%s, %s) created on agent %s", m.name, m.id, m.kind, m.agent_id)
    return m


async def update(s: ServerState, monitor_id: str, body: MonitorUpdate) -> tuple[MonitorRec, list[str]]:
    """Change what ``body`` names; the monitor and the names of the fields changed."""
    m = get(s, monitor_id)
    given = body.model_fields_set
    for name in _NOT_NULL:
        if name in given and getattr(body, name) is None:
            raise Invalid(f"{name} cannot be null (leave it out to keep it)")
    changes = body.model_dump(by_alias=True, include=given - {"credentials"})
    spec = _spec({**m.spec, **{k: v for k, v in changes.items() if k not in ("name", "agent")}})
    name = body.name if body.name is not None else m.name
    agent_id = body.agent if body.agent is not None else m.agent_id
    if "credentials" in given:
        values: dict[str, Any] | None = _cred_values(body.credentials)
        if body.credentials is not None and not values:
            raise Invalid("credentials: give at least one field (null removes them)")
        fields = set(values or ())
    else:
        values, fields = None, set(m.spec.get("credentials_set", []))
        _refuse_moved_credentials(m, spec["target"], agent_id)
    check(s, spec, m.kind, agent_id, fields)
    check_place(s, name, agent_id, m.id)
    spec["credentials_set"] = sorted(fields)
    blob = m.credentials if values is None else (s.vault.encrypt(m.id, values) if values else None)
    changed = sorted(k for k in given if k == "credentials" or changes.get(k) != _shown(m, k))
    before = (m.name, m.agent_id, m.spec, m.credentials, m.updated_at)
    m.name, m.agent_id, m.spec, m.credentials, m.updated_at = name, agent_id, spec, blob, clock.now()
    try:
        await _store(s, m)
    except BaseException:
        m.name, m.agent_id, m.spec, m.credentials, m.updated_at = before
        raise
    m.rules = [Threshold.model_validate(t) for t in spec["thresholds"]]
    m.secret_error = None
    if "agent" in changed or "target" in changed or "metrics" in changed:
        m.state, m.error, m.last_values = "pending", None, {}
        m.window.clear()
    alarms.rules_changed(s, m)
    refresh(s, force=True)
    log.info("monitor %s (%s) changed: %s", m.name, m.id, ", ".join(changed) or "nothing")
    return m, changed


def _refuse_moved_credentials(m: MonitorRec, target: str, agent_id: str) -> None:
    """Stored credentials never follow a monitor to another host or agent unless given again: else
    whoever may change a monitor (or holds a stolen admin token) could send a password they do not
    know to a host of their choosing."""
    if m.credentials is None:
        return
    moved = []
    if agent_id != m.agent_id:
        moved.append("agent")
    if endpoint(m.kind, target) != endpoint(m.kind, m.spec["target"]):
        moved.append("target host")
    if moved:
        raise Invalid(
            f"changing the {' and '.join(moved)} of a monitor holding credentials needs its credentials again"
            " (or credentials: null to drop them): stored ones never follow it to another host or agent"
        )


def _shown(m: MonitorRec, key: str) -> Any:
    if key == "name":
        return m.name
    if key == "agent":
        return m.agent_id
    return m.spec.get(key)


async def delete(s: ServerState, monitor_id: str) -> MonitorRec:
    """Delete a monitor (409 while a test not ended names it); its raised alarms end now."""
    m = get(s, monitor_id)
    if tests := s.monitors.live_tests.get(m.id):
        raise Conflict(f"test {tests[0]} (not ended) names monitor {m.name!r}: stop it or wait for its end")
    now = clock.now()
    ended: list[AlarmRec] = list(s.monitors.active.get(m.id, {}).values())
    for a in ended:
        a.ended_at = now
    await s.store.delete_monitor(m.id, [alarms.row(a) for a in ended])
    s.monitors.active.pop(m.id, None)
    for a in ended:
        s.monitors.unsaved_alarms.pop(a.id, None)
    del s.monitors.by_id[m.id]
    refresh(s, force=True)
    log.info("monitor %s (%s) deleted", m.name, m.id)
    return m


def get(s: ServerState, monitor_id: str) -> MonitorRec:
    m = s.monitors.by_id.get(monitor_id)
    if m is None:
        raise NotFound(f"no monitor with id {monitor_id!r}")
    return m


def find(s: ServerState, ref: str) -> MonitorRec:
    """A monitor by id or name (a test names its monitors either way)."""
    m = s.monitors.by_id.get(ref) or s.monitors.by_name(ref)
    if m is None:
        raise Invalid(f"no monitor with id or name {ref!r}")
    return m


# --- views --------------------------------------------------------------------------------------


def live_state(s: ServerState, m: MonitorRec) -> tuple[str, str | None]:
    """(state, error) as shown: ``offline`` with its agent, ``idle`` without a test to run for."""
    a = s.agents.get(m.agent_id)
    if a is None:
        return "error", AGENT_DELETED
    if a.status == "offline":
        return "offline", f"agent {a.name} is offline"
    if m.secret_error is not None:
        return "error", m.secret_error
    if a.id in s.monitors.too_old:
        return "error", f"agent {a.name} is too old to run monitors (version {a.version or 'unknown'})"
    if m.mode == "tests" and m.id not in s.monitors.live_tests:
        return "idle", None
    return m.state, m.error


def out(s: ServerState, m: MonitorRec) -> Monitor:
    """A monitor as the API shows it: never its credentials, only which fields are set."""
    state, error = live_state(s, m)
    spec = m.spec
    a = s.agents.get(m.agent_id)
    return Monitor(
        id=m.id,
        name=m.name,
        agent=m.agent_id,
        agent_name=a.name if a else "",
        kind=m.kind,
        target=spec["target"],
        interval=spec["interval"],
        timeout=spec.get("timeout"),
        metrics=spec["metrics"],
        thresholds=m.rules,
        mode=spec["mode"],
        match=spec.get("match"),
        insecure=spec.get("insecure", False),
        credentials_set=spec.get("credentials_set", []),
        created_at=dt(m.created_at),
        updated_at=dt(m.updated_at),
        state=state,
        error=error,
        last_ts=m.last_ts,
        last_values=m.last_values,
        alarms=len(s.monitors.active.get(m.id, ())),
    )


def listed(s: ServerState, agent_id: str | None = None) -> list[Monitor]:
    ms = sorted(s.monitors.by_id.values(), key=lambda m: (m.created_at, m.id))
    return [out(s, m) for m in ms if agent_id is None or m.agent_id == agent_id]


def metrics(s: ServerState, monitor_id: str, seconds: float | None) -> MonitorMetrics:
    m = get(s, monitor_id)
    edge = (m.last_ts or 0.0) - seconds if seconds is not None else float("-inf")
    samples = [MonitorSample(ts=ts, values=v) for ts, v in m.samples(edge)]
    return MonitorMetrics(monitor_id=m.id, samples=samples)


# --- tests that name monitors ----------------------------------------------------------------


def check_test(s: ServerState, refs: list[str], stop_on_critical: bool) -> list[str]:
    """The ids of the monitors a launch names (422 for an unknown one, before anything is made)."""
    ids: list[str] = []
    for ref in refs:
        m = find(s, ref)
        if m.id in ids:
            raise Invalid(f"monitor {ref!r} is named twice")
        if m.agent_id not in s.agents:
            raise Invalid(f"monitor {m.name!r}: {AGENT_DELETED}")
        ids.append(m.id)
    if stop_on_critical and not any(r.severity == "critical" for i in ids for r in s.monitors.by_id[i].rules):
        raise Invalid("stop_on_critical needs a named monitor with a critical threshold")
    return ids


async def attach(s: ServerState, test_id: str, ids: list[str], stop_on_critical: bool) -> None:
    """Record the monitors a new test names; those of mode ``tests`` start on their agents."""
    if not ids:
        return
    await s.store.save_test_monitors(test_id, json.dumps(ids), stop_on_critical)
    s.monitors.of_test[test_id] = (ids, stop_on_critical)
    refresh(s, force=True)


# --- assignments ---------------------------------------------------------------------------------


def refresh(s: ServerState, force: bool = False) -> None:
    """Recompute which tests run each monitor and each agent's assignment (and its revision).

    Cheap when nothing changed: the set of live tests naming monitors is compared first.
    """
    book = s.monitors
    live_ids = frozenset(
        t for t in book.of_test if (rec := s.tests.get(t)) is not None and rec.state not in TERMINAL_TEST_STATES
    )
    if not force and book.live_key == live_ids:
        return
    book.live_key = live_ids
    live: dict[str, list[str]] = {}
    for test_id in sorted(live_ids, key=lambda i: s.tests[i].created_at):
        for mid in book.of_test[test_id][0]:
            live.setdefault(mid, []).append(test_id)
    book.live_tests = live
    has_key = s.vault.has_key
    per_agent: dict[str, list[MonitorRec]] = {}
    for m in book.by_id.values():
        if m.credentials is not None and not has_key:
            try:
                s.vault.decrypt(m.id, m.credentials)  # says why, without a key to try
            except SecretUnavailable as exc:
                m.secret_error = str(exc)
            continue
        if (m.mode == "tests" and m.id not in live) or m.agent_id not in s.agents:
            continue  # nothing to run now, or its agent was deleted (no one runs it)
        per_agent.setdefault(m.agent_id, []).append(m)
    for agent_id in set(per_agent) | set(book.assigned):
        ms = sorted(per_agent.get(agent_id, []), key=lambda m: m.id)
        book.assigned[agent_id] = (_revision(ms), [m.id for m in ms])


def _revision(ms: list[MonitorRec]) -> int:
    """The same set of monitors (each as last changed) gives the same revision, after a restart too;
    none gives 0. No credential goes into it: each change of them changes ``updated_at``."""
    if not ms:
        return 0
    h = hashlib.sha256(json.dumps([(m.id, m.updated_at) for m in ms]).encode()).hexdigest()
    return int(h[:13], 16) or 1  # fits a JSON number exactly


def _assignment(s: ServerState, m: MonitorRec) -> MonitorAssignment | None:
    creds = None
    if m.credentials is not None:
        try:
            creds = MonitorCredentials.model_validate(s.vault.decrypt(m.id, m.credentials))
        except SecretUnavailable as exc:
            if m.secret_error != str(exc):
                log.warning("monitor %s (%s) not sent to its agent: %s", m.name, m.id, exc)
            m.secret_error = str(exc)
            return None
    spec = m.spec
    return MonitorAssignment(
        id=m.id,
        kind=m.kind,
        target=spec["target"],
        interval=spec["interval"],
        timeout=spec.get("timeout") or min(spec["interval"], 10.0),
        metrics=spec["metrics"],
        credentials=creds,
        match=spec.get("match"),
        insecure=spec.get("insecure", False),
    )


def heartbeat(
    s: ServerState, agent_id: str, reports: list[MonitorReport], revision: int | None
) -> tuple[list[MonitorAssignment], int] | None:
    """Take a heartbeat's monitor reports; the agent's assignment when its ``revision`` differs.

    An agent sending no revision is older than monitors (today's send 0 when they hold none): it
    would ignore an assignment, so it gets none (credentials included), and its monitors say why.
    """
    if reports:
        _ingest(s, agent_id, reports)
    if revision is None:
        s.monitors.too_old.add(agent_id)
        return None
    s.monitors.too_old.discard(agent_id)
    current, ids = s.monitors.assigned.get(agent_id, (0, []))
    if revision == current:
        return None
    out = [a for i in ids if (m := s.monitors.by_id.get(i)) is not None and (a := _assignment(s, m)) is not None]
    return out, current


def _ingest(s: ServerState, agent_id: str, reports: list[MonitorReport]) -> None:
    """Fold reports in: state, error, the window, thresholds and the series of tests naming them.
    No store write here (alarms and series are written in batches by :func:`alarms.save`)."""
    book = s.monitors
    for r in reports:
        m = book.by_id.get(r.id)
        if m is None or m.agent_id != agent_id:
            continue  # deleted or moved since the agent's assignment: it stops at the next answer
        m.state = r.state
        m.error = r.error if r.state == "error" else None
        tests = book.live_tests.get(m.id)
        for sample in r.samples:
            if not m.add(sample.ts, sample.values):
                continue  # sent again (its heartbeat's answer was lost): taken already
            if m.rules:
                alarms.evaluate(s, m, sample.ts, sample.values)
            if tests:
                for test_id in tests:
                    for metric, value in sample.values.items():
                        key = (test_id, m.id, metric)
                        line = book.series.get(key)
                        if line is None:
                            line = book.series[key] = MetricLine()
                        line.add(sample.ts, value)
                        book.series_unsaved.add(key)


# --- start-up -------------------------------------------------------------------------------


async def load(s: ServerState) -> None:
    """Take the monitors, raised alarms and live tests' series from the store (at start)."""
    live = [t.id for t in s.tests.values() if t.state not in TERMINAL_TEST_STATES]
    snap = await s.store.monitor_snapshot(live)
    book = s.monitors
    for stored in snap.monitors:
        m = _from_row(stored)
        book.by_id[m.id] = m
    for row in snap.active_alarms:
        a = alarms.from_row(row)
        book.active.setdefault(a.monitor_id, {})[(a.metric, a.severity)] = a
        if (owner := book.by_id.get(a.monitor_id)) is not None:
            owner.crossed[(a.metric, a.severity)] = a.started_at
    book.next_alarm = snap.next_alarm
    for test_id, ids, stop in snap.test_monitors:
        book.of_test[test_id] = (json.loads(ids), bool(stop))
    for test_id, mid, metric, width, packed in snap.series:
        book.series[(test_id, mid, metric)] = MetricLine.unpack(width, packed)
    refresh(s, force=True)


def _from_row(row: MonitorRow) -> MonitorRec:
    """A monitor as stored (its credentials kept encrypted, as read)."""
    mid, name, agent_id, kind, spec, blob, created, updated = row
    m = MonitorRec(mid, name, agent_id, kind, json.loads(spec), blob, created, updated)
    m.rules = [Threshold.model_validate(t) for t in m.spec.get("thresholds", [])]
    return m


def take(
    s: ServerState, rows: dict[str, MonitorRow | None], named: dict[str, tuple[str, bool] | None] | None = None
) -> None:
    """Monitors another replica created, changed or deleted (as the table holds them now; None:
    deleted), and the monitors tests launched through it name (``named``: test id -> (JSON ids,
    stop_on_critical), None: none), into memory; the assignments follow (a new revision for each
    agent whose monitors change: a test naming monitors starts them on their agents, wherever those
    heartbeat; an agent deleted through another replica runs none)."""
    book = s.monitors
    for test_id, got in (named or {}).items():
        if got is None:
            book.of_test.pop(test_id, None)
        elif test_id in s.tests:
            book.of_test[test_id] = (json.loads(got[0]), got[1])
    for mid, row in rows.items():
        old = book.by_id.get(mid)
        if row is None:
            if old is not None:
                del book.by_id[mid]
                book.active.pop(mid, None)  # ended and written by the replica that deleted it
            continue
        new = _from_row(row)
        if old is None:
            book.by_id[mid] = new
            continue
        if old.updated_at == new.updated_at and old.spec == new.spec and old.credentials == new.credentials:
            continue  # this replica's own change, read back
        moved = old.agent_id != new.agent_id or any(old.spec.get(k) != new.spec.get(k) for k in ("target", "metrics"))
        old.name, old.agent_id, old.kind, old.spec = new.name, new.agent_id, new.kind, new.spec
        old.credentials, old.created_at, old.updated_at, old.rules = (
            new.credentials, new.created_at, new.updated_at, new.rules,
        )  # fmt: skip
        old.secret_error = None
        if moved:
            old.state, old.error, old.last_values = "pending", None, {}
            old.window.clear()
        alarms.rules_changed(s, old)
    refresh(s, force=True)
