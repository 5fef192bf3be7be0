"""The JUnit XML for CI (Jenkins' junit step, GitLab's ``artifacts:reports:junit``): one
``<testsuite>`` named after the test, one ``<testcase>`` per label.

- ``classname`` is the test's name, ``name`` the label's.
- ``time`` is the label's **average** response time in seconds: what one sample of it takes (a
  sum of every sample's time would read as hours in CI's durations). The suite's ``time`` is the
  test's duration (started to ended, or to now while it runs).
- A label **fails** when any of its samples failed (``errors > 0``): the ``<failure>`` message says how
  many, the percentage and the most frequent error (code and message); its text lists every error
  counted for the label. The rule used is named in the suite's properties (``octotui.rule``).
- Each pass/fail criterion of the test (``p95<500ms``) is one more ``<testcase>`` (``classname``
  the test's name and ``.criteria``, ``name`` the expression): failed, its ``<failure>`` message is
  the server's detail (``p95 612 ms, over 500 ms by 112 ms (22 %)``); not decided yet (the test
  runs), ``<skipped>``. The suite's ``octotui.criteria_verdict`` is the test's verdict.
- A test that has not ended exports its figures of now, marked ``octotui.live=true``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime

from octotui.protocol import ErrorFigures, LabelFigures
from octotui.server.export.data import ExportData

#: The labels' rule; the test's own pass/fail criteria are test cases of their own.
RULE = "a label fails when any of its samples failed (errors > 0); each pass/fail criterion is a test case"

# Characters XML 1.0 cannot carry at all (the contract scrubs them already: belt and braces).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _text(s: str) -> str:
    return _NOT_XML.sub("\ufffd", s)


def _seconds(ms: float) -> str:
    return f"{ms / 1000.0:.3f}"


def _duration(data: ExportData) -> float:
    t = data.test
    if t.started_at is None:
        return 0.0
    end = t.ended_at.timestamp() if t.ended_at is not None else data.generated_at
    return max(0.0, end - t.started_at.timestamp())


def failure_message(f: LabelFigures, errors: list[ErrorFigures]) -> str:
    """``3 of 12 samples failed (25.0 %); most frequent: 500 Internal Server Error (2)``."""
    head = f"{f.errors} of {f.samples} samples failed ({f.error_percent:g} %)"
    if not errors:
        return head
    top = errors[0]
    return f"{head}; most frequent: {top.code} {top.message} ({top.count})"


def _props(suite: ET.Element, items: list[tuple[str, str]]) -> None:
    props = ET.SubElement(suite, "properties")
    for name, value in items:
        ET.SubElement(props, "property", name=name, value=_text(value))


def render(data: ExportData) -> bytes:
    """The XML document, UTF-8 with its declaration."""
    t = data.test
    by_label: dict[str, list[ErrorFigures]] = {}
    for e in data.errors:  # most frequent first already
        by_label.setdefault(e.label, []).append(e)
    criteria = t.criteria
    failures = sum(1 for f in data.labels if f.errors > 0) + sum(1 for c in criteria if c.passed is False)
    skipped = sum(1 for c in criteria if c.passed is None)
    duration = f"{_duration(data):.3f}"
    counts = {
        "tests": str(len(data.labels) + len(criteria)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
    }
    root = ET.Element("testsuites", {"name": _text(f"octotui {t.name}"), "time": duration, **counts})
    stamp = (t.started_at or t.created_at).replace(microsecond=0, tzinfo=None).isoformat()
    attrs = {"name": _text(t.name), "id": t.id, "hostname": "octotui", "timestamp": stamp, "time": duration}
    suite = ET.SubElement(root, "testsuite", {**attrs, **counts})
    total = data.total
    _props(
        suite,
        [
            ("octotui.test_id", t.id),
            ("octotui.state", t.state),
            ("octotui.verdict", data.verdict),
            ("octotui.live", "true" if data.live else "false"),
            *([("octotui.live_note", "live: the test is still running; figures as of generated_at")] * data.live),
            ("octotui.reason", t.reason or ""),
            ("octotui.rule", RULE),
            ("octotui.criteria_verdict", t.verdict or ""),
            *((f"octotui.warning.{i}", w) for i, w in enumerate(t.warnings, 1)),
            ("octotui.provider", t.provider_name or t.provider),
            ("octotui.image", t.image),
            ("octotui.generated_at", datetime.fromtimestamp(data.generated_at).astimezone().isoformat()),
            ("octotui.samples", str(total.samples)),
            ("octotui.errors", str(total.errors)),
            ("octotui.error_percent", f"{total.error_percent:g}"),
            ("octotui.avg_ms", f"{total.avg_ms:g}"),
            ("octotui.p95_ms", f"{total.p95_ms:g}"),
            ("octotui.throughput", f"{total.throughput:g}"),
            *((f"jmeter.property.{k}", v) for k, v in sorted(t.properties.items())),
        ],
    )
    for f in data.labels:
        case = ET.SubElement(suite, "testcase", classname=_text(t.name), name=_text(f.label), time=_seconds(f.avg_ms))
        errors = by_label.get(f.label, [])
        if f.errors > 0:
            failure = ET.SubElement(case, "failure", message=_text(failure_message(f, errors)), type="errors")
            failure.text = _text("\n".join(f"{e.count} x {e.code} {e.message}" for e in errors) or "no detail")
        out = ET.SubElement(case, "system-out")
        out.text = (
            f"samples={f.samples} errors={f.errors} error%={f.error_percent:g} avg={f.avg_ms:g}ms "
            f"median={f.p50_ms:g}ms p90={f.p90_ms:g}ms p95={f.p95_ms:g}ms p99={f.p99_ms:g}ms "
            f"min={f.min_ms:g}ms max={f.max_ms:g}ms throughput={f.throughput:g}/s"
        )
    for c in criteria:
        case = ET.SubElement(suite, "testcase", classname=_text(f"{t.name}.criteria"), name=_text(c.expr), time="0.000")
        if c.passed is False:
            failure = ET.SubElement(case, "failure", message=_text(c.detail or "failed"), type="criterion")
            failure.text = _text(c.detail or "failed")
        elif c.passed is None:
            ET.SubElement(case, "skipped", message="not decided yet: the test has not ended")
        out = ET.SubElement(case, "system-out")
        out.text = _text(c.detail)
    ET.indent(root)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"
