"""``octotui providers``, ``agents``, ``tests`` and ``test ID``: what the dashboard's tables show."""

from __future__ import annotations

import argparse
import sys
import textwrap

from octotui.client import Client
from octotui.commands import output as o
from octotui.commands.session import EXIT_OK
from octotui.protocol import TERMINAL_TEST_STATES, Agent, CriterionResult, ErrorFigures, LabelFigures, Test


async def providers(client: Client, args: argparse.Namespace) -> int:
    found = await client.providers()
    if args.json:
        o.print_json(found)
        return EXIT_OK
    if not found:
        print("no providers (create one in the dashboard: n on the providers table)", file=sys.stderr)
        return EXIT_OK
    rows = [(p.name, p.id, str(p.agents), ", ".join(p.locations) or "-", o.when(p.created_at)) for p in found]
    o.table(("NAME", "ID", "AGENTS", "LOCATIONS", "CREATED"), rows, right=(2,), flex=(0, 3), limit=o.width())
    return EXIT_OK


def _agent_status(agent: Agent) -> str:
    status = str(agent.status)
    if agent.retiring:
        status += " retiring"
    if agent.drained:
        status += " drained"
    if agent.outdated:
        status += " outdated"
    if agent.saturated:
        status += " saturated"
    if agent.duplicate_name:
        status += " dup-name"
    if agent.duplicate_machine:
        status += " dup-machine"
    return status


async def agents(client: Client, args: argparse.Namespace) -> int:
    found = await client.agents()
    if args.provider:
        found = [a for a in found if args.provider in (a.provider, a.provider_name)]
    if args.json:
        o.print_json(found)
        return EXIT_OK
    if not found:
        print("no agents", file=sys.stderr)
        return EXIT_OK
    rows = []
    for a in found:
        cpu = f"{a.host.cpu_percent:.0f}%" if a.host else "-"
        mem = f"{a.host.memory_percent:.0f}%" if a.host else "-"
        docker = "-" if a.docker is None else ("yes" if a.docker.available else "no")
        rows.append((a.name, _agent_status(a), a.provider_name or a.provider, a.location, cpu, mem,
                     str(a.containers), docker, a.version))  # fmt: skip
    headers = ("NAME", "STATUS", "PROVIDER", "LOCATION", "CPU", "MEM", "CTRS", "DOCKER", "VERSION")
    o.table(headers, rows, right=(4, 5, 6), flex=(0, 2, 3, 8, 1), limit=o.width())
    notes = [f"{a.name}: saturated, results may be skewed ({a.saturated})" for a in found if a.saturated]
    notes += [f"{a.name}: drained, gets no new containers (octotui undrain {a.name})" for a in found if a.drained]
    notes += [f"{a.name}: outdated, version {a.version} is older than the server's" for a in found if a.outdated]
    if notes:
        print()
        for note in notes:
            print(o.clip(note, o.width()))
    return EXIT_OK


def _test_row(t: Test) -> tuple[str, ...]:
    state = "stopped" if t.stopped and t.state == "finished" else t.state
    r = t.results
    return (t.id, t.name, state, str(len(t.containers)), o.count(r.samples), o.rate(r.throughput),
            o.percent(r.error_percent), o.when(t.created_at, short=True))  # fmt: skip


async def tests(client: Client, args: argparse.Namespace) -> int:
    found = await client.tests(ended=args.last)
    if args.json:
        o.print_json(found)
        return EXIT_OK
    if not found:
        print("no tests", file=sys.stderr)
        return EXIT_OK
    headers = ("ID", "NAME", "STATE", "CTRS", "SAMPLES", "HITS/S", "ERR%", "CREATED")
    o.table(headers, [_test_row(t) for t in found], right=(3, 4, 5, 6), flex=(1,), limit=o.width())
    return EXIT_OK


async def test(client: Client, args: argparse.Namespace) -> int:
    found = await client.test(args.id)
    if args.json:
        o.print_json(found)
        return EXIT_OK
    labels = await client.labels(found.id)
    errors = await client.errors(found.id)
    print_test(found, labels, errors)
    return EXIT_OK


def print_test(t: Test, labels: list[LabelFigures] | None, errors: list[ErrorFigures] | None) -> None:
    """A test as ``octotui test`` and the end of ``octotui run`` show it: its state, figures, the
    ten labels with the most samples and the most frequent errors."""
    limit = o.width()
    state = "stopped" if t.stopped and t.state == "finished" else t.state
    took = ""
    if t.started_at and t.ended_at:
        took = f" after {o.span((t.ended_at - t.started_at).total_seconds())}"
    print(o.clip(f"test {t.id} {t.name!r}: {state}{took}", limit))
    print(
        o.clip(
            f"provider {t.provider_name or t.provider}, image {t.image}, {o.plural(len(t.containers), 'container')}",
            limit,
        )
    )
    if t.reason:
        print(o.clip(f"reason: {t.reason}", limit))
    r = t.results
    print(f"samples {o.count(r.samples)}  hits/s {o.rate(r.throughput)}  "
          f"errors {o.count(r.errors)} ({o.percent(r.error_percent)} %)")  # fmt: skip
    p95, p99, note = _percentiles(t)
    print(f"response time (ms)  avg {o.ms(r.avg_ms)}  p95 {p95}  p99 {p99}  "
          f"min {o.ms(r.min_ms)}  max {o.ms(r.max_ms)}")  # fmt: skip
    if note:
        print(textwrap.fill(note, limit, subsequent_indent=" "))
    _print_judgement(t, limit)
    if t.containers:
        print()
        rows: list[tuple[str, ...]] = []
        for c in t.containers:
            figures = c.final or c.figures
            samples = o.count(figures.samples) if figures else "-"
            rows.append((str(c.index), c.agent_name or c.agent, c.location, str(c.state), samples, c.error or ""))
        headers = ("#", "AGENT", "LOCATION", "STATE", "SAMPLES", "ERROR")
        o.table(headers, rows, right=(0, 4), flex=(5, 1, 2), limit=limit)
    if labels:
        top = sorted(labels, key=lambda x: -x.samples)[:10]
        more = f" (top 10 of {len(labels)} by samples)" if len(labels) > 10 else ""
        print(f"\nper label{more}")
        rows = [(x.label, o.count(x.samples), o.percent(x.error_percent), o.ms(x.avg_ms), o.ms(x.p95_ms),
                 o.ms(x.p99_ms), o.rate(x.throughput)) for x in top]  # fmt: skip
        o.table(("LABEL", "SAMPLES", "ERR%", "AVG ms", "P95 ms", "P99 ms", "HITS/S"), rows,
                right=(1, 2, 3, 4, 5, 6), flex=(0,), limit=limit)  # fmt: skip
    if errors:
        top_errors = sorted(errors, key=lambda e: -e.count)[:5]
        more = f" (top 5 of {len(errors)})" if len(errors) > 5 else ""
        print(f"\nerrors{more}")
        rows = [(o.count(e.count), e.label, e.code, " ".join(e.message.split())) for e in top_errors]
        o.table(("COUNT", "LABEL", "CODE", "MESSAGE"), rows, right=(0,), flex=(3, 1, 2), limit=limit)


def _percentiles(t: Test) -> tuple[str, str, str]:
    """The p95 and p99 to show, and a note when one is unknown. A running test's live figures hold no
    percentiles (the server merges the containers' histograms when it ends), but a whole-test
    criterion on one (``p95<500ms``, without ``for``) carries the live figure so far: shown with
    "so far", so that the line never says "-" beside a criterion reading "so far: p95 17 ms"."""
    r = t.results
    if r.final or t.state in TERMINAL_TEST_STATES:
        return o.ms(r.p95_ms), o.ms(r.p99_ms), ""
    live = {c.metric: c.actual for c in t.criteria if c.label is None and c.for_s is None and c.actual is not None}
    shown = []
    for value, metric in ((r.p95_ms, "p95"), (r.p99_ms, "p99")):
        if value is None and (so_far := live.get(metric)) is not None:
            shown.append(f"{o.ms(so_far)} so far")
        else:
            shown.append(o.ms(value))
    note = ""
    if r.samples and "-" in shown:
        note = "(percentiles of a running test: from its whole-test criteria, e.g. 'p95<500ms'; else at the end)"

    return shown[0], shown[1], note


def _mark(c: CriterionResult) -> str:
    return {True: "pass", False: "FAIL", None: "-"}[c.passed]


def _print_judgement(t: Test, limit: int) -> None:
    """The criteria with each one's result and the server's detail (wrapped, never cut: it says by
    how much), the verdict, the warnings."""
    if t.criteria:
        failed = sum(1 for c in t.criteria if c.passed is False)
        more = f" ({failed} of {len(t.criteria)} criteria failed)" if failed else ""
        print(f"verdict: {t.verdict or 'not decided yet'}{more}")
        for c in t.criteria:
            detail = c.detail or ("not decided yet" if c.passed is None else "")
            text = f"{_mark(c):<4}  {c.expr}" + (f": {detail}" if detail else "")
            print(textwrap.fill(text, limit, subsequent_indent=" " * 6, break_on_hyphens=False))
    for warning in t.warnings:
        print(textwrap.fill(f"warning: {warning}", limit, subsequent_indent="  "))
