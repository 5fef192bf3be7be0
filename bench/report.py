"""docs/BENCHMARKS.md, rebuilt from the kept results (bench/results/*.json) and bench/findings.md."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from bench.common import ROOT, Metric, Result

REPORT = ROOT / "docs" / "BENCHMARKS.md"
FINDINGS = ROOT / "bench" / "findings.md"

HEADER = """# Benchmarks

Written by `make bench` (`python -m bench`; one figure: `python -m bench --only NAME [--quick]`).
Every figure runs real processes on loopback: `octotui server`, `octotui-agent`, the dashboard,
Docker and the JMeter image. The machine is shared with other work, so each figure runs several
times and the table shows the **median**, with the spread (lowest..highest run) beside it.
Targets are those of issues 6 and 12 (DESIGN.md, "Performance targets").
"""


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _verdict(m: Metric) -> str:
    return {True: "met", False: "**missed**", None: "-"}[m.met]


def _target(m: Metric) -> str:
    return "-" if m.target is None else f"{m.sense} {_fmt(m.target)} {m.unit}"


def write_report(order: list[str], results_dir: Path) -> Path:
    results = {}
    for name in order:
        path = results_dir / f"{name}.json"
        if path.exists():
            results[name] = Result.load(path)
    for path in sorted(results_dir.glob("*.json")):
        if path.stem not in results:
            results[path.stem] = Result.load(path)
    lines = [HEADER]
    lines += [
        "## Summary",
        "",
        "| figure | measure | median | spread (runs) | target | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results.values():
        if "whatif" in r.figure:
            continue  # a measured what-if, shown with the figures, not a result of the product
        for m in r.metrics:
            lo, hi = m.spread
            lines.append(
                f"| {r.title} | {m.name}{f' ({m.note})' if m.note else ''} | {_fmt(m.median)} {m.unit} "
                f"| {_fmt(lo)}..{_fmt(hi)} ({len(m.runs)}) | {_target(m)} | {_verdict(m)} |"
            )
    lines.append("")
    machines = {tuple(sorted(r.machine.items())) for r in results.values() if r.machine}
    if machines:
        first = next(iter(results.values())).machine
        lines += ["## Machine", ""]
        lines += [f"- {k}: {v}" for k, v in first.items() if k != "load average at start"]
        lines.append("- load average (1, 5, 15 min) when each figure started: see each figure below")
        lines.append("")
    if FINDINGS.exists():
        lines += [FINDINGS.read_text().rstrip(), ""]
    lines += ["## Figures", ""]
    for name, r in results.items():
        lines += [f"### {r.title}", ""]
        lines.append(
            f"Target: {r.target}. Measured {r.date}, {r.runs} run(s){' (quick mode)' if r.quick else ''}, "
            f"load average at start {r.machine.get('load average at start', '?')}; module `bench/{name}.py`."
        )
        lines += ["", f"How: {r.method.strip()}", ""]
        lines += ["| measure | runs | median | target | verdict |", "| --- | --- | --- | --- | --- |"]
        for m in r.metrics:
            runs = ", ".join(_fmt(v) for v in m.runs)
            lines.append(
                f"| {m.name}{f' ({m.note})' if m.note else ''} | {runs} | {_fmt(m.median)} {m.unit} "
                f"| {_target(m)} | {_verdict(m)} |"
            )
        if r.details:
            lines += ["", "Details per run:", ""]
            lines += [f"- {d}" for d in r.details]
        lines.append("")
    text = "\n".join(lines).rstrip() + "\n"
    dropped = lost_sections(REPORT.read_text() if REPORT.exists() else "", text)
    if dropped:
        # Hand-written sections belong in bench/findings.md, which every rewrite keeps.
        print(
            f"warning: {REPORT.name} had sections this rewrite drops (move them to bench/findings.md): "
            + "; ".join(dropped),
            file=sys.stderr,
        )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    return REPORT


def lost_sections(old: str, new: str) -> list[str]:
    """Headings of ``old`` that ``new`` no longer has (a section written by hand into the report)."""
    heads = {line for line in new.splitlines() if line.startswith("#")}
    return [line for line in old.splitlines() if line.startswith("## ") and line not in heads]
