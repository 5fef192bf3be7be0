"""Exports of a test (issue 12, part 5): the per-label statistics CSV, the JUnit XML and the
self-contained HTML report, through the real app with agents speaking the wire protocol, and the
report opened in a real headless Chromium (Debian's ``chromium``: a missing one fails under CI=true)."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from octotui.protocol import CriterionResult
from octotui.server.domain import clock
from octotui.server.export import gather
from octotui.server.export.report import render
from tests.support.admin import create_provider
from tests.support.app import ADMIN, Env
from tests.support.labelkit import ONE, TWO, Launched, Sample, by_hand, samples
from tests.support.monitorkit import beat_monitors, mreport, prom_body, sample
from tests.support.monitorkit import create as create_monitor
from tests.support.monitorkit import fleet as monitor_fleet
from tests.support.processes import AgentProcess
from tests.support.waiting import wait_until
from tests.support.wire import ack, bearer, figures, fleet, poll, spec

ROOT = Path(__file__).resolve().parent.parent
HOSTILE_LABEL = "<script>alert(1)</script>"
HOSTILE_MESSAGE = "<img src=x onerror=alert(2)> & \"quoted\" 'single'"
HOSTILE_VALUE = '"><script>alert(3)</script>'
#: A label failing with the hostile message; its code is a 5xx.
BAD = [
    (HOSTILE_LABEL, 5.0 + i * 0.1, 30 + i, i % 2 == 0, "200" if i % 2 == 0 else "503", HOSTILE_MESSAGE, 500, 100)
    for i in range(6)
]
FIRST: list[Sample] = ONE + BAD
SECOND: list[Sample] = TWO
EVERYTHING = FIRST + SECOND
CSV_HEADER = ["Label", "# Samples", "Average", "Median", "90% Line", "95% Line", "99% Line", "Min", "Max",
              "Error %", "Throughput (/s)", "Received KB/sec", "Sent KB/sec"]  # fmt: skip
CSV_KEYS = ["samples", "avg_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms", "error_percent",
            "throughput", "received_kbps", "sent_kbps"]  # fmt: skip


async def launched(env: Env, monkeypatch: pytest.MonkeyPatch, *, end: bool = True) -> Launched:
    """A 2-container test named "Checkout v2" with the labels of FIRST and SECOND (a sixth more at
    each point), a series of 6 points 5 s apart (live figures growing), and a hostile property value;
    ended unless ``end`` is False."""
    agents = await fleet(env, "gen-1", "gen-2")
    body = spec(name="Checkout v2", properties={"users": "10", "note": HOSTILE_VALUE})
    test = (await env.http.post("/tests", json=body)).json()
    commands = []
    for agent_id, token in agents:
        (cmd,) = await poll(env, agent_id, token)
        await ack(env, agent_id, token, cmd["id"])
        commands.append(cmd)
    t = Launched(env, test["id"], agents, commands)
    now = clock.now()
    for step in range(6):
        for i, rows in ((0, FIRST), (1, SECOND)):
            f = figures(
                samples=100 * (step + 1), rate=10.0 + step * (i + 1), avg=50.0 + 5 * step, errors=step, active=5
            )
            # The labels as they grow: each point of the series holds what came since the previous one.
            await t.beat(i, "running", rows[: len(rows) * (step + 1) // 6], figures=f)
        monkeypatch.setattr(clock, "now", lambda at=now + 5 * step: at)
        env.ctl.last_point = 0.0
        env.ctl.tick()
    monkeypatch.setattr(clock, "now", lambda: now + 30)
    await t.beat(0, "running", FIRST)
    await t.beat(1, "running", SECOND)
    if end:
        await t.beat(0, "finished", FIRST, exit_code=0)
        await t.beat(1, "finished", SECOND, exit_code=0)
        # Stored: an ended test's labels (and timeline) are then read back from the store.
        await env.ctl.flush(all_labels=True)
        assert not {c["container_id"] for c in t.commands} & set(env.ctl.labels)
    return t


async def get(env: Env, t: Launched, what: str, token: str = ADMIN) -> Any:
    r = await env.http.get(f"/tests/{t.id}/export/{what}", headers=bearer(token))
    assert r.status_code == 200, r.text
    return r


#: Elements that load something by themselves.
FETCHING = {"img", "link", "iframe", "object", "embed", "video", "audio", "source", "frame", "base", "form"}


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every start tag of ``page`` with its attributes, as a browser's parser reads them."""
    found: list[tuple[str, dict[str, str | None]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

    Collect().feed(page)
    return found


def everything_as_total() -> dict[str, Any]:
    """The TOTAL row computed by hand from every sample of every label."""
    return by_hand([("TOTAL", *rest) for _, *rest in EVERYTHING], "TOTAL")  # type: ignore[misc]


# The statistics CSV: JMeter's Aggregate Report columns, numbers equal to /labels, a TOTAL row.


async def test_numbers_equal_the_labels_and_total_is_exact(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    t = await launched(env, monkeypatch)
    r = await get(env, t, "stats.csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == f'attachment; filename="Checkout_v2-{t.id}-stats.csv"'
    assert r.headers["x-octotui-live"] == "false"
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == CSV_HEADER
    labels = await t.labels()
    assert [row[0] for row in rows[1:]] == [x["label"] for x in labels] + ["TOTAL"]
    assert HOSTILE_LABEL in [row[0] for row in rows]
    for row, want in zip(rows[1:], [*labels, everything_as_total()], strict=True):
        assert [float(v) for v in row[1:]] == [float(want[k]) for k in CSV_KEYS], row[0]
    total = rows[-1]
    assert int(total[1]) == len(EVERYTHING) == sum(x["samples"] for x in labels)


async def test_formula_labels_are_defused(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    t = await Launched.start(env)
    await t.beat(0, "running", samples("=HYPERLINK(1)", 0.0, [10, 20]) + samples("-login", 1.0, [5]))
    rows = list(csv.reader(io.StringIO((await get(env, t, "stats.csv")).text)))
    assert [row[0] for row in rows[1:]] == ["'-login", "'=HYPERLINK(1)", "TOTAL"]


# The JUnit XML: one testcase per label, a failure where errors, the rule and state in properties.


async def test_structure(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    t = await launched(env, monkeypatch)
    r = await get(env, t, "junit.xml")
    assert r.headers["content-type"].startswith("application/xml")
    assert r.headers["content-disposition"] == f'attachment; filename="Checkout_v2-{t.id}-junit.xml"'
    root = ET.fromstring(r.content)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    labels = await t.labels()
    cases = suite.findall("testcase")
    failing = [x for x in labels if x["errors"]]
    assert {x["label"] for x in failing} == {"login", HOSTILE_LABEL}
    assert suite.get("name") == "Checkout v2" and suite.get("tests") == str(len(labels)) == root.get("tests")
    assert suite.get("failures") == str(len(failing)) == root.get("failures") and suite.get("errors") == "0"
    assert [c.get("name") for c in cases] == [x["label"] for x in labels]
    errors = await t.errors()
    for case, want in zip(cases, labels, strict=True):
        assert case.get("classname") == "Checkout v2"
        assert case.get("time") == f"{want['avg_ms'] / 1000:.3f}"
        failure = case.find("failure")
        if not want["errors"]:
            assert failure is None
            continue
        assert failure is not None
        top = next(e for e in errors if e["label"] == want["label"])  # most frequent first
        message = failure.get("message", "")
        assert message.startswith(f"{want['errors']} of {want['samples']} samples failed ({want['error_percent']:g} %)")
        assert f"most frequent: {top['code']} {top['message']} ({top['count']})" in message
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["octotui.live"] == "false" and props["octotui.state"] == "finished"
    assert "errors > 0" in str(props["octotui.rule"])
    assert props["jmeter.property.note"] == HOSTILE_VALUE
    assert props["octotui.samples"] == str(len(EVERYTHING))


# The HTML report: one file, every string from the test escaped, nothing fetched.


async def test_contents_and_escaping(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    t = await launched(env, monkeypatch)
    r = await get(env, t, "report.html")
    page = r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    for label in ("home", "login", "search"):
        assert f'<td class="t">{label}</td>' in page
    # Hostile text shows as text, never as markup.
    for raw in (HOSTILE_LABEL, "<img src=x", HOSTILE_VALUE):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt; &amp; &quot;quoted&quot; &#x27;single&#x27;" in page
    assert "&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page
    # Exactly the page's own two scripts and a JSON data block; no element that could fetch anything.
    elements = tags(page)
    assert [a.get("type") for t, a in elements if t == "script"] == [None, "application/json", None]
    fetching = [(t, a) for t, a in elements if t in FETCHING or set(a) & {"src", "href", "srcset", "action", "poster"}]
    assert not fetching
    assert not re.search(r"url\(|@import", page)
    for text in ("finished", "Checkout v2", "local", "paris", "gen-1", "gen-2", "Users", "10"):
        assert text in page
    assert 'data-chart="hits"' in page
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page)
    assert data is not None
    kept = json.loads(data[1])
    # A point every 5 s while it ran, and one as it ended (at 30 s).
    assert [p[0] for p in kept["series"]] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    # Each label's series: every sample counted once over the points (hits/s x the seconds since
    # the label's previous point), the hostile label among them as data, not markup.
    assert [x["name"] for x in kept["labels"]] == sorted({r[0] for r in EVERYTHING})
    for x in kept["labels"]:
        counted = sum(p[1] * p[7] for p in x["points"])  # hits/s x the seconds each point stands for
        assert counted == pytest.approx(sum(1 for r in EVERYTHING if r[0] == x["name"])), x["name"]
    assert f'<option value="0">{html.escape(sorted({r[0] for r in EVERYTHING})[0])}</option>' in page
    # The generators' CPU and memory kept with the test, one point a second of the series each.
    assert [(g["name"], [p[1:] for p in g["points"]]) for g in kept["generators"]] == [
        ("gen-1", [[10.0, 20.0]] * 6),  # while it ran a container of the test
        ("gen-2", [[10.0, 20.0]] * 6),
    ]
    assert "kept with the test" in page
    # No criteria: no such section.
    assert 'id="criteria"' not in page and "data-warning" not in page


async def test_live_test_exports_its_figures_of_now(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    t = await launched(env, monkeypatch, end=False)
    report = await get(env, t, "report.html")
    assert report.headers["x-octotui-live"] == "true"
    assert "live — the test is still running" in report.text and 'data-verdict="live"' in report.text
    root = ET.fromstring((await get(env, t, "junit.xml")).content)
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["octotui.live"] == "true" and props["octotui.state"] == "running"
    rows = list(csv.reader(io.StringIO((await get(env, t, "stats.csv")).text)))
    assert int(rows[-1][1]) == len(EVERYTHING)


async def test_unknown_test_404_reader_may_agent_may_not(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    t = await launched(env, monkeypatch)
    reader = await env.ctl.add_operator_token("read-only", "watcher")
    for what in ("stats.csv", "junit.xml", "report.html"):
        r = await env.http.get(f"/tests/t-000000000000/export/{what}")
        assert r.status_code == 404 and "t-000000000000" in r.json()["detail"]
        assert (await get(env, t, what, reader)).content
        r = await env.http.get(f"/tests/{t.id}/export/{what}", headers=bearer(t.agents[0][1]))
        assert r.status_code == 403


def chromium() -> str:
    """Debian's chromium; missing: a failure under CI=true (scripts/test-tools.sh installs it), else a skip."""
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: bash scripts/test-tools.sh installs it (apt-get install chromium)")
        pytest.skip("chromium is missing (bash scripts/test-tools.sh installs it)")
    return found


def browse(page: Path, profile: Path, *extra: str, fragment: str = "") -> subprocess.CompletedProcess[str]:
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", "--hide-scrollbars", *extra, page.as_uri() + fragment]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)


#: The charts of the report of ``launched``: the test's 5, a label's 4, the generators' 2.
CHARTS = 11


def drawn(dom: str) -> dict[str, int]:
    """Each chart of a dumped page: how many lines (polylines) it drew."""
    figs = re.findall(r'<figure data-chart="([^"]+)".*?</figure>', dom, re.S)
    bodies = re.findall(r'<figure data-chart="[^"]+".*?</figure>', dom, re.S)
    return {name: body.count('class="line"') for name, body in zip(figs, bodies, strict=True)}


async def with_criteria(env: Env, t: Launched) -> str:
    """The report of ``t`` as it reads once the server decided criteria and warned (the criteria's
    engineer fills those fields: here they are set on what the export read)."""
    data = await gather(env.ctl, env.ctl.get_test(t.id))
    test = data.test.model_copy(
        update={
            "criteria": [
                CriterionResult(expr="p95<500ms", metric="p95", op="<", threshold=500.0, actual=612.0, passed=False,
                                detail="p95 612 ms, over 500 ms by 112 ms (22 %)"),
                CriterionResult(expr="errors<50% of login", metric="errors", label="login", op="<", threshold=50.0,
                                actual=20.0, passed=True, detail=HOSTILE_MESSAGE),
            ],
            "verdict": "failed",
            "warnings": [f"results may be skewed: {HOSTILE_LABEL} saturated for 45 s (CPU 97 %)"],
        }
    )  # fmt: skip
    return render(replace(data, test=test))


async def test_report_renders_in_headless_chromium(env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The page runs in a real browser: every chart drawn (the test's, a label's picked by name,
    the generators'), the tables sort, no script error, no policy violation, the hostile label is
    text in the table; criteria, verdict and warnings shown."""
    chromium()
    t = await launched(env, monkeypatch)
    page = tmp_path / "report.html"
    page.write_bytes((await get(env, t, "report.html")).content)
    run = browse(page, tmp_path / "profile", "--dump-dom")
    dom = run.stdout
    assert run.returncode == 0, run.stderr[-2000:]
    assert f'data-charts-drawn="{CHARTS}"' in dom, run.stderr[-2000:]
    assert '<div id="page-errors" hidden=""></div>' in dom, re.findall(r'<div id="page-errors".*?</div>', dom, re.S)
    lines = drawn(dom)
    # Two lines where a chart shows two figures (average and 95th, received and sent, two generators).
    assert lines == {"hits": 1, "times": 2, "errors": 1, "active": 1, "bytes": 2, "label-hits": 1, "label-errors": 1,
                     "label-times": 2, "label-bytes": 2, "gen-cpu": 2, "gen-memory": 2}  # fmt: skip
    first = sorted({r[0] for r in EVERYTHING})[0]
    assert f'data-label-shown="{html.escape(first)}"' in dom
    assert len(re.findall(r'<th [^>]*tabindex="0"', dom)) >= 14  # the tables were made sortable
    assert '<td class="t">&lt;script&gt;alert(1)&lt;/script&gt;</td>' in dom
    assert 'id="monitors-section"' not in dom  # it named no monitor
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Refused" in line]
    assert not console, console
    # Another label, picked by its name in the address: its charts are drawn instead.
    criteria = tmp_path / "criteria.html"
    criteria.write_text(await with_criteria(env, t))
    run = browse(criteria, tmp_path / "profile3", "--dump-dom", fragment="#label=search")
    dom = run.stdout
    assert 'data-label-shown="search"' in dom and f'data-charts-drawn="{CHARTS}"' in dom, run.stderr[-2000:]
    assert drawn(dom)["label-hits"] == 1 and '<div id="page-errors" hidden=""></div>' in dom
    assert not [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Refused" in line]
    assert 'id="criteria-badge">failed</span>' in dom and "verdict: failed" in dom
    assert "<code>p95&lt;500ms</code>" in dom and "p95 612 ms, over 500 ms by 112 ms (22 %)" in dom
    assert '<td class="t fail">failed</td>' in dom and '<td class="t pass">passed</td>' in dom
    assert "results may be skewed: &lt;script&gt;alert(1)&lt;/script&gt; saturated" in dom
    assert "<img" not in criteria.read_text() and HOSTILE_LABEL not in criteria.read_text()
    shot = tmp_path / "report.png"
    run = browse(page, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,2400")
    assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]
    if keep := os.environ.get("OCTOTUI_REPORT_SHOT"):  # to look at it: OCTOTUI_REPORT_SHOT=/tmp/r.png
        shutil.copy(shot, keep)
        shutil.copy(criteria, Path(keep).with_suffix(".html"))


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
def test_real_jmeter_test_exports_and_renders(  # type: ignore[no-untyped-def]
    server, agents, docker_client, jmeter_image, http_target, tmp_path: Path
) -> None:
    """A real agent runs real JMeter against a local target: the exports of the ended test agree
    with /labels, and its report renders in Chromium with its charts and no error."""
    chromium()
    api = server.client()
    provider = create_provider(api, "lab")
    agents.append(AgentProcess(server.url, provider["token"], tmp_path / "gen", location="paris", name="gen").start())
    wait_until(lambda: [a for a in api.get("/agents").json() if (a.get("docker") or {}).get("available")], timeout=40)
    spec = {"name": "e2e export", "plan": (ROOT / "examples" / "http-get.jmx").read_text(), "provider": "lab",
            "containers": 1, "image": jmeter_image, "users": 2, "duration": 6,
            "properties": {"host": "127.0.0.1", "port": str(http_target.port), "path": "/"}}  # fmt: skip
    created = api.post("/tests", json=spec)
    assert created.status_code == 201, created.text
    test_id = created.json()["id"]

    def ended() -> dict[str, Any] | None:
        t = api.get(f"/tests/{test_id}").json()
        return t if t["state"] in ("finished", "failed") else None

    final = wait_until(ended, timeout=120, interval=1, what="the real test to end")
    assert final["state"] == "finished", final
    labels = api.get(f"/tests/{test_id}/labels").json()
    assert labels and sum(x["samples"] for x in labels) > 0
    rows = list(csv.reader(io.StringIO(api.get(f"/tests/{test_id}/export/stats.csv").text)))
    assert [r[0] for r in rows[1:]] == [x["label"] for x in labels] + ["TOTAL"]
    assert int(rows[-1][1]) == sum(x["samples"] for x in labels)
    suite = ET.fromstring(api.get(f"/tests/{test_id}/export/junit.xml").content).find("testsuite")
    assert suite is not None and [c.get("name") for c in suite.iter("testcase")] == [x["label"] for x in labels]
    page = tmp_path / "report.html"
    page.write_bytes(api.get(f"/tests/{test_id}/export/report.html").content)
    run = browse(page, tmp_path / "profile", "--dump-dom")
    assert 'data-charts-drawn="' in run.stdout and '<div id="page-errors" hidden=""></div>' in run.stdout
    charts = drawn(run.stdout)  # the test's, its label's, its generator's: each drew its lines
    assert charts["hits"] == 1 and charts["label-hits"] == 1 and charts["gen-cpu"] == 1, charts
    assert not [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    if keep := os.environ.get("OCTOTUI_REPORT_SHOT"):
        shutil.copy(page, Path(keep).with_suffix(".e2e.html"))


async def test_failed_container_error_and_reason_are_escaped(env: Env) -> None:
    t = await Launched.start(env)
    await t.beat(0, "running", ONE)
    await t.beat(0, "failed", ONE, exit_code=1, error=f"JMeter said {HOSTILE_MESSAGE}")
    await t.beat(1, "finished", TWO, exit_code=0)
    test = (await env.http.get(f"/tests/{t.id}")).json()
    page = (await get(env, t, "report.html")).text
    # One container of two failed: the test finished, degraded, and says why (with the agent's text).
    assert test["state"] == "finished" and "JMeter said <img" in test["reason"]
    assert 'data-verdict="finished"' in page
    reason = re.search(r'<div class="banner" id="reason">(.*?)</div>', page)
    assert reason is not None and "container 0 on gen-1: failed: JMeter said &lt;img src=x" in reason[1]
    assert "Containers that reported a problem" in page and "exit code 1" in page
    assert "<img" not in page


async def test_report_shows_the_monitors_in_headless_chromium(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A test naming a monitor, stopped by its critical alarm: the report's Monitors section charts
    the metric kept with the test on the test's time axis with the alarms' start and end marked,
    lists the alarms and says which one stopped the test; drawn by Chromium with no script error."""
    chromium()
    [(agent, token)] = await monitor_fleet(env, "gen-1")
    thresholds = [{"metric": "node_load1", "severity": "warning", "above": 2},
                  {"metric": "node_load1", "severity": "critical", "above": 4}]  # fmt: skip
    m = await create_monitor(env, prom_body(agent, name="db 1", thresholds=thresholds))
    rev = (await beat_monitors(env, agent, token))["monitor_revision"]
    r = await env.http.post(
        "/tests", json=spec(name="watched", containers=1, monitors=[m["id"]], stop_on_critical=True)
    )
    assert r.status_code == 201, r.text
    test_id = r.json()["id"]
    now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: now + 15)
    loads = [1.0, 3.0, 3.5, 1.0, 2.5, 6.0]  # warning raised, ended, raised again; then critical: stopped
    samples = [sample(now + 2 * i, node_load1=v) for i, v in enumerate(loads)]
    await beat_monitors(env, agent, token, rev, [mreport(m["id"], *samples)])
    page = tmp_path / "watched.html"
    r = await env.http.get(f"/tests/{test_id}/export/report.html")
    assert r.status_code == 200, r.text
    page.write_bytes(r.content)
    run = browse(page, tmp_path / "profile", "--dump-dom")
    dom = run.stdout
    assert run.returncode == 0, run.stderr[-2000:]
    assert '<div id="page-errors" hidden=""></div>' in dom, re.findall(r'<div id="page-errors".*?</div>', dom, re.S)
    assert not [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Refused" in line]
    assert drawn(dom)["mon-0"] == 1
    chart = re.search(r'<figure data-chart="mon-0".*?</figure>', dom, re.S)
    assert chart is not None
    assert chart.group(0).count('class="alarm-start"') == 3 and chart.group(0).count('class="alarm-end"') == 1
    section = re.search(r'<section id="monitors-section">.*?</section>', dom, re.S)
    assert section is not None
    rows = re.findall(r"<tr class=\"row[^\"]*\">(.*?)</tr>", section.group(0), re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    assert [c[2] for c in cells] == ["warning", "warning", "critical"]
    assert cells[0][0] == "db 1" and cells[0][1] == "node_load1"
    assert [c[5] for c in cells][1:] == ["still raised", "still raised"] and cells[0][5] != "still raised"
    assert [c[6] for c in cells] == ["3.50", "6", "6"]  # the latest value while raised
    stop = 'id="critical-stop">Stopped by a critical alarm: db 1 node_load1 = 6 (above 4)</div>'
    assert stop in section.group(0)
