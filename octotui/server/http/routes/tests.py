"""Test routes: launch (with ``Idempotency-Key``), list, read, series, labels, errors, plan, compare with a
baseline, stop a test or one container, delete an ended test."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from octotui.protocol import (
    Comparison,
    ErrorFigures,
    LabelFigures,
    Placement,
    Test,
    TestCreate,
    TestSeries,
)
from octotui.server.domain import series
from octotui.server.http.deps import Ctl, Reader, Writer, audit_change
from octotui.server.http.responses import ListingResponse

router = APIRouter()


@router.post("/tests", response_model=Test | Placement, status_code=201, tags=["tests"])
async def create_test(
    body: TestCreate,
    ctl: Ctl,
    who: Writer,
    response: Response,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=8,
            max_length=128,
            pattern=r"^[!-~]+$",
            description="a launch sent again with the same key (after a lost answer) answers with the "
            "test the first one made (200, `Idempotent-Replayed: true`) instead of starting a second",
        ),
    ] = None,
) -> Test | Placement:
    result, replayed = await ctl.create_test(body, idempotency_key)
    if replayed:  # made by the first request: not a second launch, not audited again
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    elif isinstance(result, Placement):
        response.status_code = 200  # a dry run changes nothing: not audited
    else:
        detail = f"name={result.name} provider={result.provider_name} containers={len(result.containers)}"
        await audit_change(request, who, "test.create", result.id, detail)
    return result


@router.get("/tests", response_model=list[Test], tags=["tests"], response_class=ListingResponse)
async def list_tests(
    ctl: Ctl,
    _: Reader,
    ended: Annotated[
        int | None, Query(ge=0, le=100_000, description="keep only the N most recent ended tests (all live ones)")
    ] = None,
) -> list[Test]:
    """Every test, oldest first; with ``ended``, every live test and only the newest ended ones."""
    return ctl.listed_tests(ended)


@router.get("/tests/{test_id}", response_model=Test, tags=["tests"], response_class=ListingResponse)
async def get_test(test_id: str, ctl: Ctl, _: Reader) -> Test:
    return ctl.test_out(ctl.get_test(test_id))


@router.get("/tests/{test_id}/series", response_model=TestSeries, tags=["tests"])
async def test_series(
    test_id: str,
    ctl: Ctl,
    _: Reader,
    labels: Annotated[bool, Query(description="every label's series too")] = False,
    label: Annotated[
        str | None, Query(min_length=1, max_length=1000, description="this label's series too ([] when it has none)")
    ] = None,
    generators: Annotated[bool, Query(description="each load generator's CPU and memory during the test")] = False,
) -> TestSeries:
    """The whole test's series, one point a second for the last hour and older points merged (at
    most ~5,000 points); kept over a restart. With ``labels=true`` every label's series, with
    ``label=NAME`` that one's (each at most 1,000 points: the last 10 minutes one a second); with
    ``generators=true`` each load generator's CPU and memory over the test."""
    points = await ctl.test_series(test_id)
    t = ctl.get_test(test_id)
    return TestSeries(
        test_id=test_id,
        points=points,
        labels=await series.labels(ctl, t, label) if labels or label is not None else [],
        generators=await series.generators(ctl, t) if generators else [],
    )


@router.get(
    "/tests/{test_id}/plan",
    response_class=Response,
    tags=["tests"],
    responses={200: {"content": {"application/xml": {"schema": {"type": "string"}}}, "description": "the JMX"}},
)
async def test_plan(test_id: str, ctl: Ctl, _: Reader) -> Response:
    """The JMX plan the test was launched with, as it was sent."""
    return Response(ctl.test_plan(test_id), media_type="application/xml")


@router.delete("/tests/{test_id}", status_code=204, tags=["tests"])
async def delete_test(test_id: str, ctl: Ctl, who: Writer, request: Request) -> Response:
    """Delete an ended test with its containers, per-label figures, series and JTLs (409 while it
    has not ended: stop it first)."""
    test = await ctl.delete_test(test_id)
    await audit_change(request, who, "test.delete", test_id, f"name={test.name}")
    return Response(status_code=204)


@router.get("/tests/{test_id}/labels", response_model=list[LabelFigures], tags=["tests"])
async def test_labels(test_id: str, ctl: Ctl, _: Reader) -> list[LabelFigures]:
    """Each label (sampler or transaction) merged over the test's containers, sorted by label; live
    while it runs, final after. ``(other labels)`` counts the labels a container had no room for."""
    return await ctl.test_labels(test_id)


@router.get("/tests/{test_id}/errors", response_model=list[ErrorFigures], tags=["tests"])
async def test_errors(test_id: str, ctl: Ctl, _: Reader) -> list[ErrorFigures]:
    """Failed samples per label, response code and message over the test, most frequent first."""
    return await ctl.test_errors(test_id)


_TOLERANCE = {"ge": 0, "le": 1_000_000}


@router.get("/tests/{test_id}/compare/{baseline_id}", response_model=Comparison, tags=["tests"])
async def compare_tests(
    test_id: str,
    baseline_id: str,
    ctl: Ctl,
    _: Reader,
    avg_ms: Annotated[float | None, Query(**_TOLERANCE, description="% the average may grow (10)")] = None,
    p95_ms: Annotated[float | None, Query(**_TOLERANCE, description="% the 95th percentile may grow (10)")] = None,
    error_percent: Annotated[float | None, Query(**_TOLERANCE, description="points the error % may grow (1)")] = None,
    throughput: Annotated[float | None, Query(**_TOLERANCE, description="% the throughput may fall (10)")] = None,
) -> Comparison:
    """Each label (of either run) against the same label of the baseline: samples, average, 95th
    percentile, error % and throughput of both, ``regression`` with its ``reasons`` where this run is
    worse beyond the tolerances. The baseline may not be the test itself (422)."""
    given = {"avg_ms": avg_ms, "p95_ms": p95_ms, "error_percent": error_percent, "throughput": throughput}
    return await ctl.compare(test_id, baseline_id, given)


@router.post("/tests/{test_id}/stop", response_model=Test, tags=["tests"])
async def stop_test(test_id: str, ctl: Ctl, who: Writer, request: Request) -> Test:
    test = await ctl.stop_test(test_id, by=who.subject or who.kind)
    await audit_change(request, who, "test.stop", test_id, f"name={test.name}")
    return test


@router.post("/tests/{test_id}/containers/{container_id}/stop", response_model=Test, tags=["tests"])
async def stop_container(test_id: str, container_id: str, ctl: Ctl, who: Writer, request: Request) -> Test:
    test = await ctl.stop_one(test_id, container_id)
    await audit_change(request, who, "container.stop", container_id, f"test={test_id}")
    return test
