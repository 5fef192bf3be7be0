"""``octotui compare ID BASELINE``: each label of a test against the same label of an earlier one,
as ``GET /tests/{id}/compare/{baseline}`` answers it; exit 1 when any label regressed (for CI)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from octotui.commands import output as o
from octotui.commands.session import EXIT_CRITERIA, EXIT_OK

if TYPE_CHECKING:  # the parser imports this module's options: it must not import the contract
    from octotui.client import Client
    from octotui.protocol import Comparison, LabelDelta

#: Option dest -> the route's query parameter.
TOLERANCES = {
    "avg_tolerance": "avg_ms",
    "p95_tolerance": "p95_ms",
    "error_tolerance": "error_percent",
    "throughput_tolerance": "throughput",
}


def tolerance(value: str) -> float:
    """A ``--*-tolerance`` value: a number ≥ 0 (argparse turns the ValueError into a usage error)."""
    number = float(value)
    if not number >= 0 or number == float("inf"):  # refuses nan too
        raise ValueError(value)
    return number


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="the test to judge")
    parser.add_argument("baseline", help="the earlier test it is compared with")
    group = parser.add_argument_group("tolerances (the server's defaults: 10 %, 10 %, 1 point, 10 %)")
    group.add_argument("--avg-tolerance", type=tolerance, metavar="PCT", help="%% the average may grow")
    group.add_argument("--p95-tolerance", type=tolerance, metavar="PCT", help="%% the 95th percentile may grow")
    group.add_argument("--error-tolerance", type=tolerance, metavar="POINTS", help="points the error %% may grow")
    group.add_argument("--throughput-tolerance", type=tolerance, metavar="PCT", help="%% the throughput may fall")


async def compare(client: Client, args: argparse.Namespace) -> int:
    given = {query: getattr(args, dest) for dest, query in TOLERANCES.items() if getattr(args, dest) is not None}
    found = await client.compare(args.id, args.baseline, given)
    if args.json:
        o.print_json(found)
    else:
        await _print(client, found)
    return EXIT_CRITERIA if found.regressions else EXIT_OK


async def _name(client: Client, test_id: str) -> str:
    from octotui.client import ClientError

    try:
        return f"{test_id} {(await client.test(test_id)).name!r}"
    except ClientError:  # only the title is missing
        return test_id


def _pair(before: float | None, now: float | None, fmt: str = "ms") -> str:
    """``100 → 130``; ``-`` for a side where the label is absent."""
    show = {"ms": o.ms, "pct": o.percent, "rate": o.rate}[fmt]
    return f"{'-' if before is None else show(before)} → {'-' if now is None else show(now)}"


def _samples(d: LabelDelta) -> str:
    return f"{'-' if d.baseline_samples is None else o.count(d.baseline_samples)} → " + (
        "-" if d.samples is None else o.count(d.samples)
    )


def _tolerances(c: Comparison) -> str:
    t = c.tolerances
    parts = []
    for key, text in (("avg_ms", "avg +{:g} %"), ("p95_ms", "p95 +{:g} %"), ("error_percent", "errors +{:g} point"),
                      ("throughput", "throughput -{:g} %")):  # fmt: skip
        if key in t:
            parts.append(text.format(t[key]) + ("s" if key == "error_percent" and t[key] != 1 else ""))
    return ", ".join(parts)


async def _print(client: Client, c: Comparison) -> None:
    limit = o.width()
    print(o.clip(f"test {await _name(client, c.test_id)} against baseline {await _name(client, c.baseline_id)}", limit))
    if c.tolerances:
        print(o.clip(f"tolerances: {_tolerances(c)}", limit))
    if not c.labels:
        print("no labels in either test")
    else:
        print()
        rows = [("!" if d.regression else "", d.label, _samples(d), _pair(d.baseline_avg_ms, d.avg_ms),
                 _pair(d.baseline_p95_ms, d.p95_ms), _pair(d.baseline_error_percent, d.error_percent, "pct"),
                 _pair(d.baseline_throughput, d.throughput, "rate")) for d in c.labels]  # fmt: skip
        headers = ("", "LABEL", "SAMPLES", "AVG ms", "P95 ms", "ERR %", "HITS/S")
        o.table(headers, rows, right=(2, 3, 4, 5, 6), flex=(1,), limit=limit)
    regressed = [d for d in c.labels if d.regression]
    if not regressed:
        print(f"\nno regression ({o.plural(len(c.labels), 'label')} compared)")
        return
    print(f"\n{o.plural(len(regressed), 'label')} regressed (marked !):")
    for d in regressed:
        for reason in d.reasons or ["worse than the baseline"]:
            print(o.clip(f"  {o.clip(d.label, 30)}: {reason}", limit))
