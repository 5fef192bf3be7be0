"""``python -m bench``: run every figure (or ``--only NAME[,NAME]``) and rewrite docs/BENCHMARKS.md.

Each figure runs ``--runs`` times (3 by default: the machine is shared, so the median counts) and
its result is kept in bench/results/NAME.json; the report is rebuilt from every kept result, so a
single figure can be measured again without losing the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench.common import RESULTS, Result, machine, now_iso
from bench.report import write_report

#: Figure modules, in the report's order.
FIGURES = [
    "agent_idle",
    "agent_jmeter",
    "launch",
    "launch_key",
    "command_delivery",
    "replica_commands",
    "replica_failover",
    "replica_scale",
    "replica_labels",
    "server_scale",
    "dashboard_load",
    "terminal_output",
    "first_frame",
    "export_report",
    "report_series",
    "jtl_export",
    "agent_jtl",
    "label_latency",
    "dashboard_labels",
    "monitors",
    "monitor_ingest",
    "cli_agents",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", help=f"comma-separated figures among: {', '.join(FIGURES)}")
    parser.add_argument("--quick", action="store_true", help="shorter windows and one run, for development")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument("--no-report", action="store_true", help="measure, keep the results, skip docs/BENCHMARKS.md")
    parser.add_argument(
        "--no-save", action="store_true", help="measure and print only: write neither bench/results nor the report"
    )
    args = parser.parse_args(argv)
    names = FIGURES if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    runs = args.runs or (1 if args.quick else 3)
    if runs < 1:
        parser.error("--runs must be >= 1")
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}: {module.TITLE} ({runs} run(s){', quick' if args.quick else ''})", flush=True)
        started = time.monotonic()
        info, date = machine(), now_iso()
        try:
            result: Result = module.run(runs=runs, quick=args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        result.machine, result.date, result.runs, result.quick = info, date, runs, args.quick
        if not args.no_save:
            result.save()
        for m in result.metrics:
            verdict = {True: "met", False: "MISSED", None: ""}[m.met]
            lo, hi = m.spread
            print(f"   {m.name}: median {m.median:.2f} {m.unit} (runs {lo:.2f}..{hi:.2f}) {verdict}", flush=True)
        for line in result.details:
            print(f"   {line}", flush=True)
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    if not (args.no_report or args.no_save):
        path = write_report(FIGURES, RESULTS)
        print(f"report: {path}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
