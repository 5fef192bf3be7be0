"""Export routes of a test (issue 12, part 5): the per-label statistics CSV, the JUnit XML and the
self-contained HTML report, each a download named after the test. Any operator token may export.

A test that has not ended exports its figures of now (200): the report says "live — the test is
still running", the XML says ``octotui.live=true``, and every answer carries ``X-Octotui-Live``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from octotui.server.export import ExportData, junit, report, stats_csv
from octotui.server.export.data import file_name
from octotui.server.http.deps import Ctl, Reader

router = APIRouter(tags=["exports"])


def _doc(media: str, what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": what, "content": {media: {"schema": {"type": "string"}}}}}


def _download(data: ExportData, body: str | bytes, media: str, suffix: str, **headers: str) -> Response:
    return Response(
        body,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{file_name(data.test, suffix)}"',
            "X-Octotui-Live": "true" if data.live else "false",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            **headers,
        },
    )


@router.get(
    "/tests/{test_id}/export/stats.csv",
    response_class=Response,
    responses=_doc("text/csv", "JMeter's Aggregate Report columns, one row per label and a TOTAL row"),
)
async def export_stats_csv(test_id: str, ctl: Ctl, _: Reader) -> Response:
    """Per-label statistics as CSV: Label, # Samples, Average, Median, 90/95/99% Line, Min, Max,
    Error %, Throughput (/s), Received and Sent KB/sec; numbers as ``/labels`` answers them."""
    data = await ctl.test_export(test_id)
    return _download(data, stats_csv.render(data), "text/csv; charset=utf-8", "-stats.csv")


@router.get(
    "/tests/{test_id}/export/junit.xml",
    response_class=Response,
    responses=_doc("application/xml", "one testsuite, one testcase per label, a failure where it had errors"),
)
async def export_junit(test_id: str, ctl: Ctl, _: Reader) -> Response:
    """JUnit XML for CI: one ``<testcase>`` per label (``time``: its average in seconds), a
    ``<failure>`` for a label with failed samples; the rule and the test's state in ``<properties>``."""
    data = await ctl.test_export(test_id)
    return _download(data, junit.render(data), "application/xml", "-junit.xml")


@router.get(
    "/tests/{test_id}/export/report.html",
    response_class=Response,
    responses=_doc("text/html", "one self-contained page: nothing is fetched when it opens"),
)
async def export_report(
    test_id: str,
    ctl: Ctl,
    _: Reader,
    baseline: Annotated[
        str | None, Query(description="a test to compare with: adds a 'Compared with' section (default tolerances)")
    ] = None,
) -> Response:
    """The HTML report: settings, verdict, summary, statistics per label, errors, charts over time,
    generators and times, in one file that fetches nothing; with ``baseline``, each label against
    that test (as ``/tests/{id}/compare/{baseline}`` answers it)."""
    data = await ctl.test_export(test_id, baseline)
    return _download(
        data,
        report.render(data),
        "text/html; charset=utf-8",
        "-report.html",
        **{"Content-Security-Policy": report.POLICY},
    )
