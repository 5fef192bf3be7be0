"""Comparing a test with a baseline (issue 12, part 6, server side) through the real app: a slower
second run is marked as a regression with the right reasons, tolerances can be given, bad ids are
refused, and the HTML report shows the comparison when asked for it."""

from __future__ import annotations

from typing import Any

from tests.support.app import Env
from tests.support.labelkit import Sample, cumulative, samples
from tests.support.wire import ack, fleet, poll, report, spec


def spaced(label: str, count: int, every: float, ms: int) -> list[Sample]:
    """``count`` good samples of ``ms`` each, one every ``every`` seconds."""
    return [(label, i * every, ms, True, "200", "OK", 1000, 200) for i in range(count)]


BASELINE = (
    samples("home", 0.0, [100] * 20)
    + samples("login", 0.0, [200] * 10)
    + spaced("search", 10, 0.1, 50)
    + samples("gone", 0.0, [10] * 5)
)
SLOWER = (
    samples("home", 0.0, [130] * 20)  # avg and p95 +30 %
    + samples("login", 0.0, [200] * 10, fail_every=2)  # 50 % errors
    + spaced("search", 10, 0.2, 50)  # the same times, half the throughput
    + samples("new", 0.0, [10] * 5)
)


async def run(env: Env, agent: tuple[str, str], name: str, rows: list[Sample]) -> str:
    """A one-container test that reports ``rows`` and ends; its id."""
    r = await env.http.post("/tests", json=spec(name=name, containers=1))
    assert r.status_code == 201, r.text
    agent_id, token = agent
    (cmd,) = await poll(env, agent_id, token)
    await ack(env, agent_id, token, cmd["id"])
    labels, errors = cumulative(rows)
    await env.beat(agent_id, token, containers=[report(cmd, "running", labels=labels, errors=errors)])
    await env.beat(agent_id, token, containers=[report(cmd, "finished", exit_code=0)], complete=False)
    test: dict[str, Any] = (await env.http.get(f"/tests/{r.json()['id']}")).json()
    assert test["state"] == "finished"
    return str(test["id"])


async def test_a_slower_run_is_a_regression_with_its_reasons(env: Env) -> None:
    agent = (await fleet(env, "gen-1"))[0]
    base = await run(env, agent, "before", BASELINE)
    slow = await run(env, agent, "after", SLOWER)
    r = await env.http.get(f"/tests/{slow}/compare/{base}")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["test_id"] == slow and got["baseline_id"] == base
    assert got["tolerances"] == {"avg_ms": 10.0, "p95_ms": 10.0, "error_percent": 1.0, "throughput": 10.0}
    by = {d["label"]: d for d in got["labels"]}
    assert list(by) == ["gone", "home", "login", "new", "search"]
    now = {x["label"]: x for x in (await env.http.get(f"/tests/{slow}/labels")).json()}
    before = {x["label"]: x for x in (await env.http.get(f"/tests/{base}/labels")).json()}
    home = by["home"]
    assert (home["avg_ms"], home["baseline_avg_ms"]) == (130.0, 100.0)
    assert (home["p95_ms"], home["baseline_p95_ms"]) == (now["home"]["p95_ms"], before["home"]["p95_ms"])
    assert home["samples"] == home["baseline_samples"] == 20
    p95_now, p95_before = now["home"]["p95_ms"], before["home"]["p95_ms"]
    grew = (p95_now - p95_before) * 100 / p95_before
    assert home["regression"] and home["reasons"] == [
        "avg +30 % (100 → 130 ms)",
        f"p95 +{grew:.0f} % ({p95_before:.0f} → {p95_now:.0f} ms)",
    ]
    assert by["login"]["regression"] and by["login"]["reasons"] == ["errors +50.0 points (0.0 → 50.0 %)"]
    assert (by["login"]["error_percent"], by["login"]["baseline_error_percent"]) == (50.0, 0.0)
    search = by["search"]
    fell = (search["baseline_throughput"] - search["throughput"]) * 100 / search["baseline_throughput"]
    assert fell > 40 and search["avg_ms"] == search["baseline_avg_ms"] == 50.0
    assert search["regression"] and search["reasons"] == [
        f"throughput -{fell:.0f} % ({search['baseline_throughput']:.1f} → {search['throughput']:.1f} /s)"
    ]
    # A label of one run only: the other side empty, no regression.
    assert by["gone"]["samples"] is None and by["gone"]["baseline_samples"] == 5 and not by["gone"]["regression"]
    assert by["new"]["baseline_avg_ms"] is None and by["new"]["samples"] == 5 and not by["new"]["regression"]
    assert got["regressions"] == 3
    # The other way round: every figure is better, nothing regressed.
    back = (await env.http.get(f"/tests/{base}/compare/{slow}")).json()
    assert back["regressions"] == 0, back

    # Wider tolerances: no regression.
    wide = {"avg_ms": 50, "p95_ms": 50, "error_percent": 60, "throughput": 60}
    r = await env.http.get(f"/tests/{slow}/compare/{base}", params=wide)
    assert r.status_code == 200 and r.json()["regressions"] == 0
    assert r.json()["tolerances"] == {k: float(v) for k, v in wide.items()}
    r = await env.http.get(f"/tests/{slow}/compare/{base}", params={"avg_ms": 50})
    assert {d["label"] for d in r.json()["labels"] if d["regression"]} == {"home", "login", "search"}
    assert next(x for x in r.json()["labels"] if x["label"] == "home")["reasons"][0].startswith("p95")
    assert (await env.http.get(f"/tests/{slow}/compare/{base}", params={"avg_ms": -1})).status_code == 422

    # The report, with the comparison when a baseline is named.
    r = await env.http.get(f"/tests/{slow}/export/report.html", params={"baseline": base})
    assert r.status_code == 200, r.text
    page = r.text
    assert 'id="comparison"' in page and f"Compared with before <code>{base}</code>" in page
    assert "avg +30 % (100 → 130 ms)" in page and "3 label(s) regressed" in page
    plain = (await env.http.get(f"/tests/{slow}/export/report.html")).text
    assert 'id="comparison"' not in plain


async def test_bad_comparisons_are_refused(env: Env) -> None:
    agent = (await fleet(env, "gen-1"))[0]
    base = await run(env, agent, "before", BASELINE)
    r = await env.http.get(f"/tests/{base}/compare/{base}")
    assert r.status_code == 422 and "its own baseline" in r.json()["detail"]
    r = await env.http.get(f"/tests/{base}/compare/t-000000000000")
    assert r.status_code == 404 and "t-000000000000" in r.json()["detail"]
    r = await env.http.get(f"/tests/t-000000000000/compare/{base}")
    assert r.status_code == 404
    r = await env.http.get(f"/tests/{base}/export/report.html", params={"baseline": "t-000000000000"})
    assert r.status_code == 404
