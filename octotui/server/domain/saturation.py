"""Saturated load generators: an agent running a test's containers whose own machine is the
bottleneck, so the test measures the generator rather than the system under test.

From the agent's host samples (agent clock, read as they come in, each second): CPU at or over
:data:`CPU_PERCENT` of all cores for :data:`CPU_SECONDS`, memory at or over :data:`MEMORY_PERCENT`,
swapping (pages in or out faster than :data:`SWAP_BPS`), or TCP retransmits over
:data:`RETRANSMIT_PERCENT` of the segments sent (when it sends at least :data:`SEGMENTS_FLOOR` a
second). ``Agent.saturated`` says why now; each test it ran containers of carries one warning per
such agent, kept up to date (``results may be skewed: gen-b saturated for 45 s (CPU 97 %)``).
"""

from __future__ import annotations

import re

from octotui.protocol import HostSample
from octotui.server.domain.state import ServerState
from octotui.server.records import AgentRec, SaturationWatch, Spell, TestRec

CPU_PERCENT = 90.0
CPU_SECONDS = 10.0
MEMORY_PERCENT = 90.0
SWAP_BPS = 256 * 1024.0
RETRANSMIT_PERCENT = 2.0
SEGMENTS_FLOOR = 100.0
#: A gap between two samples longer than this (the agent away) counts as this long at most.
MAX_GAP = 5.0
#: Samples read back when an agent starts running containers (for a CPU run begun just before).
LOOKBACK = CPU_SECONDS + 5.0
#: Container states in which it generates load.
LOADING = frozenset({"starting", "running", "stopping"})

PREFIX = "results may be skewed: "


def reasons(sample: HostSample, cpu_held: float) -> list[str]:
    """Why a machine is saturated at ``sample`` (empty: it is not); ``cpu_held``: seconds its CPU
    has been at or over the threshold so far."""
    out = []
    if cpu_held >= CPU_SECONDS:
        out.append(f"CPU {sample.cpu_percent:.0f} % for {cpu_held:.0f} s")
    if sample.memory_percent >= MEMORY_PERCENT:
        out.append(f"memory {sample.memory_percent:.0f} %")
    swap = sample.swap_in_bps + sample.swap_out_bps
    if swap >= SWAP_BPS:
        out.append(f"swapping {swap / 1048576:.1f} MiB/s")
    if (pct := retransmit_percent(sample)) is not None:
        out.append(f"TCP retransmits {pct:.1f} % of segments sent")
    return out


def retransmit_percent(sample: HostSample) -> float | None:
    """The share of segments retransmitted, when over the threshold (None otherwise)."""
    out = sample.tcp_segments_out_per_s
    if out < SEGMENTS_FLOOR:
        return None
    pct = sample.tcp_retransmits_per_s * 100.0 / out
    return pct if pct > RETRANSMIT_PERCENT else None


def _loading_tests(s: ServerState, a: AgentRec) -> list[TestRec]:
    ids = {c.test_id for cid in s.live.get(a.id, ()) if (c := s.containers[cid]).state in LOADING}
    return [t for tid in sorted(ids) if (t := s.tests.get(tid)) is not None]


def sweep(s: ServerState) -> None:
    """Read each agent's new samples: its ``saturated`` now, and the spells of the tests it loads."""
    for a in s.agents.values():
        tests = _loading_tests(s, a) if a.status == "online" else []
        if not tests or a.host is None:
            a.watch = None
            _set(s, a, None)
            continue
        _read(s, a, tests)


def _set(s: ServerState, a: AgentRec, why: str | None) -> None:
    if why != a.saturated:
        a.saturated = why
        s.feed.touch("agent", a.id)


def _read(s: ServerState, a: AgentRec, tests: list[TestRec]) -> None:
    assert a.host is not None
    w = a.watch
    if w is None:
        w = a.watch = SaturationWatch()
        samples = s.hosts.get(a.id, LOOKBACK)
    elif a.host.ts <= w.last_ts:
        return
    else:
        samples = s.hosts.get(a.id, a.host.ts - w.last_ts + 1.0)
    why: list[str] = []
    for sample in samples:
        if sample.ts <= w.last_ts:
            continue
        previous = w.last_ts if w.last_ts != float("-inf") else sample.ts - 1.0
        gap = min(MAX_GAP, sample.ts - previous)
        if sample.cpu_percent >= CPU_PERCENT:
            if w.cpu_since is None:
                w.cpu_since = previous  # a reading covers the time since the one before
        else:
            w.cpu_since = None
        cpu_held = sample.ts - w.cpu_since if w.cpu_since is not None else 0.0
        why = reasons(sample, cpu_held)
        if why:
            # A CPU run counts whole once it qualifies: it was saturated all that time.
            add = gap if w.saturated or cpu_held < CPU_SECONDS else max(gap, min(cpu_held, CPU_SECONDS + MAX_GAP))
            for t in tests:
                _spell(s, t, a, sample, add, cpu_held)
        w.saturated = bool(why)
        w.last_ts = sample.ts
    _set(s, a, "; ".join(why) if why else None)


def _spell(s: ServerState, t: TestRec, a: AgentRec, sample: HostSample, seconds: float, cpu_held: float) -> None:
    spell = t.spells.get(a.id)
    if spell is None:
        spell = t.spells[a.id] = Spell(agent_id=a.id, seconds=_seconds_before(t, a))
    spell.seconds += seconds
    if cpu_held >= CPU_SECONDS:
        spell.cpu = max(spell.cpu, sample.cpu_percent)
    if sample.memory_percent >= MEMORY_PERCENT:
        spell.memory = max(spell.memory, sample.memory_percent)
    if sample.swap_in_bps + sample.swap_out_bps >= SWAP_BPS:
        spell.swap_bps = max(spell.swap_bps, sample.swap_in_bps + sample.swap_out_bps)
    if (pct := retransmit_percent(sample)) is not None:
        spell.retransmit_percent = max(spell.retransmit_percent, pct)
    text = warning(a.name, spell)
    if text == spell.text:
        return
    old = spell.text or _stored_line(t, a)
    if old and old in t.warnings:
        t.warnings[t.warnings.index(old)] = text
    else:
        t.warnings.append(text)
    spell.text = text
    s.unsaved.tests.add(t.id)
    s.feed.touch("test", t.id)


def warning(name: str, spell: Spell) -> str:
    """``results may be skewed: gen-b saturated for 45 s (CPU 97 %, memory 93 %)``."""
    parts = []
    if spell.cpu:
        parts.append(f"CPU {spell.cpu:.0f} %")
    if spell.memory:
        parts.append(f"memory {spell.memory:.0f} %")
    if spell.swap_bps:
        parts.append(f"swapping {spell.swap_bps / 1048576:.1f} MiB/s")
    if spell.retransmit_percent:
        parts.append(f"TCP retransmits {spell.retransmit_percent:.1f} %")
    return f"{PREFIX}{name} saturated for {spell.seconds:.0f} s ({', '.join(parts)})"


def _stored_line(t: TestRec, a: AgentRec) -> str | None:
    """This agent's line among warnings kept from before a restart (the live spell was lost)."""
    head = f"{PREFIX}{a.name} saturated for "
    return next((w for w in t.warnings if w.startswith(head)), None)


_SECONDS = re.compile(r" saturated for (\d+) s ")


def _seconds_before(t: TestRec, a: AgentRec) -> float:
    line = _stored_line(t, a)
    m = _SECONDS.search(line) if line else None
    return float(m.group(1)) if m else 0.0
