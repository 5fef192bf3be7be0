"""Start-up: the state read from the store taken into memory."""

from __future__ import annotations

from octotui.server.domain import agents, clock, fleet, labels, series
from octotui.server.domain.lifecycle import TERMINAL, TEST_TERMINAL
from octotui.server.domain.state import ServerState
from octotui.server.store import Snapshot


def load(s: ServerState, snap: Snapshot) -> None:
    """Take the state read from the store at start-up."""
    now = clock.now()
    for p in snap.providers:
        s.providers[p.id] = p
        s.tokens.add(p.token_hash, "provider", p.id)
    for token_hash, role, subject in snap.tokens:
        if role == "agent":
            s.tokens.add(token_hash, "agent", subject)
    s.tokens.replace_operators(snap.operators)
    for a in snap.agents:
        # Grace after a restart: agents get offline_after seconds to come back before their
        # containers count as lost, whatever their last heartbeat before the restart.
        a.health_ref = max(a.last_seen or 0.0, now)
        a.status = agents.status(s, a, now)
        s.agents[a.id] = a
        agents.count_name(s, a, +1)
        fleet.count_machine(s, a, +1)
    for t in snap.tests:
        s.tests[t.id] = t
    for f in snap.files:
        s.files[f.id] = f
    for c in snap.containers:
        s.containers[c.id] = c
        if c.state not in TERMINAL:
            s.live.setdefault(c.agent_id, set()).add(c.id)
        if c.state == "stopping":
            c.stopping_since = now  # its agent gets the whole deadline again after a restart
    for cmd in snap.commands:
        s.commands.push(cmd)
    labels.load(s, snap.labels)
    series.load(s, snap.series)
    # The agents send a label only when it changed: ask them for every label of the containers
    # of tests still under way (what was stored may be up to labels_save_interval old).
    for c in snap.containers:
        if (owner := s.tests.get(c.test_id)) is not None and owner.state not in TEST_TERMINAL:
            s.labels_wanted.setdefault(c.agent_id, {})[c.id] = 0
    since = now - s.settings.idempotency_ttl
    s.launch_keys.load([row for row in snap.launch_keys if row[3] >= since])
