"""Comparing a test with a baseline (issue 12, part 6, server side) through the real app: a slower
second run is marked as a regression with the right reasons, tolerances can be given, bad ids are
refused, and the HTML report shows the comparison when asked for it; and two real JMeter runs, the
second against a target answering slower, compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import create_provider
from tests.support.app import Env
from tests.support.labelkit import Sample, cumulative, samples
from tests.support.processes import AgentProcess
from tests.support.slowtarget import SlowTarget
from tests.support.waiting import wait_until
from tests.support.wire import ack, fleet, poll, report, spec

ROOT = Path(__file__).resolve().parent.parent


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


# Two real JMeter runs of one plan, the second against a target answering slower.


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
def test_two_real_jmeter_runs_the_slower_one_regresses(  # type: ignore[no-untyped-def]
    server, agents, docker_client, jmeter_image, tmp_path: Path
) -> None:
    """A real agent runs the real http-get plan twice for 3 s against a local target; for the
    second run the target waits 150 ms before each answer: its label is marked as a regression
    (average, 95th and throughput), and the first against the second is not."""
    api = server.client()
    provider = create_provider(api, "lab")
    agents.append(AgentProcess(server.url, provider["token"], tmp_path / "gen", location="paris", name="gen").start())
    wait_until(lambda: [a for a in api.get("/agents").json() if (a.get("docker") or {}).get("available")], timeout=40)
    with SlowTarget() as target:

        def run(name: str) -> str:
            spec = {"name": name, "plan": (ROOT / "examples" / "http-get.jmx").read_text(), "provider": "lab",
                    "containers": 1, "image": jmeter_image, "users": 2, "duration": 3,
                    "properties": {"host": "127.0.0.1", "port": str(target.port), "path": "/slow"}}  # fmt: skip
            created = api.post("/tests", json=spec)
            assert created.status_code == 201, created.text
            test_id = str(created.json()["id"])

            def ended() -> dict[str, Any] | None:
                t = api.get(f"/tests/{test_id}").json()
                return t if t["state"] in ("finished", "failed") else None

            final = wait_until(ended, timeout=120, interval=1, what=f"run {name!r} to end")
            assert final["state"] == "finished", final
            return test_id

        fast = run("before")
        target.delay = 0.15
        slow = run("after")
    got = api.get(f"/tests/{slow}/compare/{fast}").json()
    (delta,) = got["labels"]
    assert delta["label"] == "GET /slow" and delta["samples"] > 0 and delta["baseline_samples"] > 0
    assert delta["avg_ms"] >= 150 and delta["p95_ms"] >= 150 and delta["avg_ms"] > 1.5 * delta["baseline_avg_ms"]
    assert delta["p95_ms"] > delta["baseline_p95_ms"]
    assert delta["regression"] and got["regressions"] == 1, got
    reasons = " ".join(delta["reasons"])
    assert "avg +" in reasons and "p95 +" in reasons and "throughput -" in reasons, reasons
    assert api.get(f"/tests/{fast}/compare/{slow}").json()["regressions"] == 0
    # The slower run's series, per label and per generator, as the dashboard asks for them.
    series = api.get(f"/tests/{slow}/series", params={"labels": "true", "generators": "true"}).json()
    (line,) = series["labels"]
    assert line["label"] == "GET /slow" and line["points"]
    assert max(p["p95_ms"] or 0 for p in line["points"]) >= 150 and max(p["rate"] for p in line["points"]) > 0
    (gen,) = series["generators"]
    assert gen["agent_name"] == "gen" and gen["points"]
    assert all(0 <= p["cpu_percent"] <= 100 and 0 < p["memory_percent"] <= 100 for p in gen["points"])
    # The report against the baseline says so.
    page = api.get(f"/tests/{slow}/export/report.html", params={"baseline": fast}).text
    assert "1 label(s) regressed" in page and "GET /slow" in page
