"""The dashboard's side of issue 12 parts 7 and 8: a stopped test reads ``stopped``, "now" figures go
blank once a test ended, charts of the whole run in eighth blocks over an elapsed-time axis, each
container's CPU and memory, deleting an ended test, re-running one as it was, and the launch dialog
filled with an earlier test's settings.

Drawing, forms and rows are checked without Textual; the screens against a real ``octotui server``
process fed by an agent that speaks the wire protocol (so that the test decides each heartbeat).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from octotui.protocol import ContainerRecord, Test, TestFile, TestResults
from octotui.tui import rows
from octotui.tui.forms import (
    ServerPlan,
    prefill_fields,
    read_launch_form,
    rerun_question,
    rerun_spec,
    server_plan_label,
)
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.main import MainScreen
from octotui.tui.screens.test import TestScreen
from octotui.tui.testlines import test_summary as summary
from octotui.tui.usage import ContainerUsage
from octotui.tui.widgets.charts import Chart, bar_lines, columns, elapsed, time_axis
from octotui.tui.widgets.tables import TestsTable
from tests.support.beating import Beating
from tests.support.online import beating_every
from tests.support.processes import ServerProcess
from tests.support.tui import SIZE, build_app, text_of
from tests.support.waiting import wait_until, wait_until_pilot
from tests.support.wire import PLAN
from tests.support.wireagent import WireAgent, running_test

EIGHTHS = set("▁▂▃▄▅▆▇")


# --- charts, without Textual ------------------------------------------------------------------


def test_bars_in_eighth_blocks() -> None:
    # 0, 1/16, 1/4, 3/8 and all of a 2-row chart: eighths on the bottom row, full blocks below tops
    lines = bar_lines([0.0, 1.0, 4.0, 6.0, 16.0], 16.0, 2)
    assert lines == ["    █", " ▁▄▆█"]
    assert bar_lines([0.01], 100.0, 3)[-1] == "▁", "a value above zero shows at least one eighth"


def test_whole_run_folds_into_the_width() -> None:
    values = [float(i) for i in range(10)]
    times = [float(i) for i in range(10)]
    assert columns(values, times, 20) == (values, times), "one column per value while they fit"
    data, at = columns(values, times, 4)
    assert data == [1.0, 4.0, 7.0, 9.0] and at == [0.0, 3.0, 6.0, 9.0], "buckets of 3: means"
    assert columns(values, times, 4, "max")[0] == [2.0, 5.0, 8.0, 9.0]
    # buckets start at the first value: one more value changes only the last column
    assert columns([*values, 10.0], [*times, 10.0], 4)[0][:3] == data[:3]


def test_elapsed_labels_under_the_plot() -> None:
    assert [elapsed(s) for s in (0, 5.9, 65, 3599, 3723)] == ["0:00", "0:05", "1:05", "59:59", "1:02:03"]
    axis = time_axis([float(i) for i in range(60)], 60)
    assert len(axis) == 60 and axis.startswith("0:00 ") and "0:30" in axis and "0:50" in axis
    assert axis.index("0:30") == 30, "each label starts at the column of its time"
    # 2 hours in 70 columns: labels every so many minutes, never overlapping
    hours = time_axis([i * 100.0 for i in range(70)], 70)
    labels = hours.split()
    assert labels[0] == "0:00" and len(labels) >= 3 and all(":" in x for x in labels)
    assert time_axis([], 10) == " " * 10


# --- forms, rows and summary, without Textual -----------------------------------------------------


def a_test(**over: Any) -> Test:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": "t1", "name": "checkout", "provider": "p1", "provider_name": "lab", "locations": ["paris", "lyon"],
        "image": "justb4/jmeter:5.6", "state": "finished", "created_at": now - timedelta(minutes=5),
        "started_at": now - timedelta(minutes=5), "ended_at": now,
        "properties": {"users": "3", "duration": "60", "rampup": "5", "host": "127.0.0.1", "think_ms": "50"},
        "containers": [
            ContainerRecord(id=f"c{i}", test_id="t1", agent="a", agent_name="gen1", state="finished", index=i)
            for i in range(2)
        ],
        "results": TestResults(samples=1000, errors=2, throughput=9.5, avg_ms=42, min_ms=3, max_ms=300, active=6,
                               final=True, p90_ms=80, p95_ms=90, p99_ms=120),
        "files": [TestFile(id="f1", split=True, header=True)],
    }  # fmt: skip
    values.update(over)
    return Test(**values)


def test_rerun_is_the_test_as_it_was() -> None:
    spec = rerun_spec(a_test(), "<jmeterTestPlan/>")
    assert (spec.name, spec.plan, spec.provider, spec.containers) == ("checkout", "<jmeterTestPlan/>", "p1", 2)
    assert spec.locations == ["paris", "lyon"] and spec.image == "justb4/jmeter:5.6"
    assert (spec.users, spec.duration, spec.rampup) == (3, 60, 5), "the fields the properties came from"
    assert spec.properties == {"host": "127.0.0.1", "think_ms": "50"}
    assert spec.files == [TestFile(id="f1", split=True, header=True)] and not spec.dry_run
    # a value that no field accepts stays the property it was
    odd = rerun_spec(a_test(properties={"users": "${__P(u,1)}"}, locations=[]), "<x/>")
    assert odd.users is None and odd.properties == {"users": "${__P(u,1)}"} and odd.locations is None


def test_rerun_question_says_what_will_run() -> None:
    text = rerun_question(a_test())
    assert text.splitlines()[0] == "Run checkout again as it was? A new test starts:"
    assert "2 containers on lab (paris, lyon) · 3 users each · 60 s · ramp-up 5 s" in text
    assert "image justb4/jmeter:5.6" in text and "properties host=127.0.0.1 think_ms=50" in text
    assert "1 file as before" in text and "plan of test checkout (from the server)" in text


def test_the_dialog_filled_with_a_test_accepts_its_plan_without_a_path() -> None:
    test = a_test()
    fields, provider = prefill_fields(test)
    assert provider == "p1" and fields["plan"] == server_plan_label("checkout")
    assert fields == fields | {"name": "checkout", "locations": "paris,lyon", "containers": "2", "users": "3",
                               "duration": "60", "rampup": "5", "properties": "host=127.0.0.1 think_ms=50",
                               "image": "justb4/jmeter:5.6"}  # fmt: skip
    plan = ServerPlan(fields["plan"], "<jmeterTestPlan/>", "checkout", tuple(test.files))
    form = read_launch_form(fields, provider, None, plan)
    assert form.problem is None and form.spec is not None
    assert form.spec.model_dump(exclude={"plan"}) == rerun_spec(test, "x").model_dump(exclude={"plan"})
    # the name left empty: the earlier test's, not the label's
    form = read_launch_form(fields | {"name": ""}, provider, None, plan)
    assert form.spec is not None and form.spec.name == "checkout"
    # without the server's plan the label is no path; a path typed instead is read as a path
    assert (read_launch_form(fields, provider, None).problem or "").startswith("Plan file: no such file")
    typed = read_launch_form(fields | {"plan": "/nope.jmx"}, provider, None, plan)
    assert (typed.problem or "").startswith("Plan file: no such file")


def test_a_stopped_test_reads_stopped() -> None:
    stopped = a_test(stopped=True)
    assert rows.test_state(stopped) == "stopped" and rows.test_state(a_test()) == "finished"
    assert rows.test_state(a_test(stopped=True, state="failed")) == "failed"
    made, _ = rows.test_rows([stopped])
    assert made["t1"][1].text == "stopped"
    assert summary(stopped).startswith("checkout · stopped · lab/paris,lyon")


def test_now_figures_blank_once_ended() -> None:
    running = a_test(state="running", ended_at=None, results=TestResults(samples=10, active=6))
    assert summary(running).splitlines()[2].startswith("users now 6 · times: min")
    third = summary(a_test()).splitlines()[2]
    assert third == "users now - · times: min 3 · max 300 · p90 80 · p95 90 · p99 120 ms (final)"
    assert all(len(line) <= 78 for line in summary(a_test()).splitlines()[1:]), "fits 80 columns"


def test_container_usage_keeps_each_heartbeat_once_and_is_bounded() -> None:
    start = datetime.now(UTC)

    def at(seconds: int, state: str = "running") -> Test:
        c = ContainerRecord(id="c0", test_id="t1", agent="a", state=state, cpu_percent=float(seconds),
                            memory_bytes=seconds * 2**20, updated_at=start + timedelta(seconds=seconds))  # fmt: skip
        return a_test(state="running", containers=[c])

    usage = ContainerUsage("t1", window=3)
    assert usage.add(at(1)) and not usage.add(at(1)), "the same heartbeat polled twice counts once"
    for s in (2, 3, 4):
        assert usage.add(at(s))
    assert [u.cpu_percent for u in usage.of("c0")] == [2.0, 3.0, 4.0], "bounded: the oldest leave"
    assert not usage.add(at(5, "finished")), "an ended container runs no more"
    assert not ContainerUsage("other").add(at(6)) and usage.of("nope") == ()


# --- against a real server ------------------------------------------------------------------------


@pytest.fixture
def running(server: ServerProcess) -> Iterator[tuple[WireAgent, dict[str, Any], Beating]]:
    """A test "shop" of one container running on a wire agent that beats 4 times a second."""
    agent, report = running_test(server)
    beating = Beating(agent, report)
    yield agent, report, beating
    beating.stop.set()
    beating.thread.join(timeout=10)
    agent.close()


def api_test(server: ServerProcess, test_id: str) -> dict[str, Any]:
    with server.client() as http:
        return dict(http.get(f"/tests/{test_id}").raise_for_status().json())


def route_or_skip(server: ServerProcess, test_id: str, method: str, path: str) -> None:
    """Skip while the server lacks a route of issue 12 (another part lands it)."""
    with server.client() as http:
        status = http.request(method, path.format(id=test_id)).status_code
    if status in (404, 405) and method == "GET":
        pytest.skip(f"the server has no {method} {path} yet ({status})")


async def test_stopped_test_charts_axis_and_container_usage(
    server: ServerProcess, running: tuple[WireAgent, dict[str, Any], Beating]
) -> None:
    _, report, beating = running
    test_id = report["test_id"]
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t", "enter")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, TestScreen), what="the test screen")
        screen = app.screen
        assert isinstance(screen, TestScreen)
        rate = screen.query_one("#rate-chart", Chart)
        await wait_until_pilot(pilot, lambda: len(rate.values) >= 4, timeout=30, what="4 points of hits/s")
        await pilot.pause(0.3)
        drawn = str(rate.render())
        *_, axis = drawn.splitlines()
        assert "└0:00" in axis, axis
        assert set(drawn) & EIGHTHS, "bars drawn in eighth blocks"
        assert "hits/s now " in drawn and "now -" not in drawn
        assert "users now 6" in text_of(app, "#test-title")

        await pilot.press("m")
        cpu = screen.query_one("#cpu-usage", Chart)
        # The server keeps the generator's CPU and memory over the test: the charts show its machine's
        # from the test's start (the wire agent's host reads 5 % CPU, 10 % memory).
        await wait_until_pilot(pilot, lambda: len(cpu.values) >= 3, timeout=20, what="3 CPU samples of the generator")
        mem = screen.query_one("#mem-usage", Chart)
        assert set(cpu.values) == {5.0} and set(mem.values) == {10.0} and cpu.ceiling == 100.0
        await pilot.pause(0.3)
        drawn = str(cpu.render())
        assert drawn.startswith("CPU gen1 (machine) now 5.0 %") and re.search(r"└0:0\d", drawn), drawn
        line = text_of(app, "#container-line")
        assert line.startswith("#0 gen1 · running · container now ") and line.endswith(" in c"), line

        points = len(rate.values)
        with server.client() as http:
            http.post(f"/tests/{test_id}/stop").raise_for_status()
        beating.end()
        await wait_until_pilot(pilot, lambda: "· stopped ·" in text_of(app, "#test-title"), what="stopped")
        assert api_test(server, test_id)["stopped"] is True
        await pilot.pause(0.6)
        title = text_of(app, "#test-title")
        assert "users now - · times:" in title, title
        for chart in ("#rate-chart", "#rt-chart", "#err-chart"):
            line = str(screen.query_one(chart, Chart).render()).splitlines()[0]
            assert " now -" in line, line
        assert len(rate.values) >= points, "the chart keeps the whole run"
        assert str(screen.query_one("#cpu-usage", Chart).render()).startswith("CPU gen1 (machine) now -")
        await pilot.press("escape", "t")
        tests = app.screen.query_one(TestsTable)
        row = tests.row_cells(test_id)
        assert row is not None and row[1].text == "stopped"


async def test_delete_asks_then_removes_and_a_live_test_is_refused(
    server: ServerProcess, running: tuple[WireAgent, dict[str, Any], Beating]
) -> None:
    _, report, beating = running
    test_id = report["test_id"]
    route_or_skip(server, test_id, "GET", "/tests/{id}/plan")
    app = build_app(server)
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
        tests = app.screen.query_one(TestsTable)
        await wait_until_pilot(pilot, lambda: tests.row_count == 1, what="the test")
        # still running: the server refuses (409), said so plainly
        app.actions.delete_test(test_id, "shop")
        await wait_until_pilot(pilot, lambda: any("still running" in n for n in notes), what="the refusal")
        assert any(n.startswith("shop is still running: stop it first (s), then delete it") for n in notes)
        notes.clear()
        await pilot.press("t", "delete")
        assert not isinstance(app.screen, ConfirmScreen) and any("stop it first" in n for n in notes)

        with server.client() as http:
            http.post(f"/tests/{test_id}/stop").raise_for_status()
        beating.end()
        await wait_until_pilot(pilot, lambda: tests.row_cells(test_id)[1].text == "stopped", what="stopped")  # type: ignore[index]
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Delete test shop (stopped) with its results" in app.screen.question
        await pilot.press("n")
        assert tests.row_count == 1, "no: nothing deleted"
        await pilot.press("delete", "y")
        await wait_until_pilot(pilot, lambda: tests.row_count == 0, what="the test gone from the list")
        assert any("Test shop deleted" in n for n in notes)
        with server.client() as http:
            assert http.get(f"/tests/{test_id}").status_code == 404


async def test_delete_from_the_test_screen_and_none_in_read_only(
    server: ServerProcess, running: tuple[WireAgent, dict[str, Any], Beating]
) -> None:
    _, report, beating = running
    test_id = report["test_id"]
    with server.client() as http:
        http.post(f"/tests/{test_id}/stop").raise_for_status()
    beating.end()
    wait_until(lambda: api_test(server, test_id)["state"] == "finished", what="the test to end")

    app = build_app(server, read_only=True)
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
        tests = app.screen.query_one(TestsTable)
        await wait_until_pilot(pilot, lambda: tests.row_count == 1, what="the test")
        await pilot.press("t")
        assert "delete_test" not in {b.binding.action for b in app.active_bindings.values() if b.enabled}
        await pilot.press("delete")
        assert isinstance(app.screen, MainScreen) and "read-only: deleting tests is disabled" in notes
        await pilot.press("enter")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, TestScreen), what="the test screen")
        actions = {b.binding.action for b in app.active_bindings.values() if b.enabled}
        assert not actions & {"delete_test", "rerun", "edit_copy", "stop_test"}, actions
        await pilot.press("delete", "R", "E")
        assert isinstance(app.screen, TestScreen)
        assert "read-only: deleting tests is disabled" in notes and "read-only: launching is disabled" in notes

    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        tests = app.screen.query_one(TestsTable)
        await wait_until_pilot(pilot, lambda: tests.row_count == 1, what="the test")
        await pilot.press("t", "enter")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, TestScreen), what="the test screen")
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, MainScreen), what="back on the main screen")
        await wait_until_pilot(pilot, lambda: tests.row_count == 0, what="the test gone")
        with server.client() as http:
            assert http.get(f"/tests/{test_id}").status_code == 404


SETTINGS = {"locations": ["paris"], "image": "example.org/jmeter:5.6", "users": 3, "duration": 60, "rampup": 5,
            "properties": {"host": "127.0.0.1", "think_ms": "50"}}  # fmt: skip
KEPT = ("name", "provider", "locations", "image", "properties")


def ended_test(server: ServerProcess, agent: WireAgent, body: dict[str, Any]) -> dict[str, Any]:
    """The test ``body`` made, its containers run on ``agent`` with a few samples, then stopped."""
    with server.client() as http:
        made = http.post("/tests", json=body)
        assert made.status_code == 201, made.text
        test = dict(made.json())
    reports: list[dict[str, Any]] = []
    figures = {"samples": 10, "errors": 0, "rate": 5.0, "avg_ms": 20.0, "min_ms": 2, "max_ms": 90, "active": 3}
    for _ in range(20):
        commands = agent.http.get(f"/agents/{agent.id}/commands", params={"timeout": 0}, headers=agent.auth).json()
        for cmd in commands:
            agent.http.post(f"/agents/{agent.id}/commands/{cmd['id']}/ack", json={"ok": True}, headers=agent.auth)
            reports.append({"container_id": cmd["container_id"], "test_id": cmd["test_id"], "command_id": cmd["id"],
                            "state": "running", "figures": figures})  # fmt: skip
        if len(reports) == len(test["containers"]):
            break
    agent.beat(*reports)
    with server.client() as http:
        http.post(f"/tests/{test['id']}/stop").raise_for_status()
    agent.beat(*({**r, "state": "finished", "exit_code": 0} for r in reports))
    wait_until(lambda: api_test(server, test["id"])["state"] == "finished", what="the test to end")
    return test


async def test_rerun_and_the_dialog_filled_with_the_test(server: ServerProcess) -> None:
    with server.client() as http:
        provider = http.post("/providers", json={"name": "lab"}).raise_for_status().json()
    agent = WireAgent(server, provider["token"])
    try:
        agent.beat()
        first = ended_test(
            server, agent, {"name": "shop", "plan": PLAN, "provider": "lab", "containers": 2, **SETTINGS}
        )
        with server.client() as http:
            if http.get(f"/tests/{first['id']}/plan").status_code == 404:
                pytest.skip("the server has no GET /tests/{id}/plan yet")
        app = build_app(server)
        with beating_every(agent.beat):  # the agent stays online for the re-run
            async with app.run_test(size=SIZE) as pilot:
                tests = app.screen.query_one(TestsTable)
                await wait_until_pilot(pilot, lambda: tests.row_count == 1, what="the test")
                await pilot.press("t", "enter")
                await wait_until_pilot(pilot, lambda: isinstance(app.screen, TestScreen), what="the test screen")
                await wait_until_pilot(pilot, lambda: "· stopped ·" in text_of(app, "#test-title"), what="stopped")
                await pilot.press("R")
                assert isinstance(app.screen, ConfirmScreen)
                question = app.screen.question
                assert "2 containers on lab (paris) · 3 users each · 60 s · ramp-up 5 s" in question
                assert "image example.org/jmeter:5.6" in question and "host=127.0.0.1 think_ms=50" in question
                await pilot.press("y")
                await wait_until_pilot(pilot, lambda: len(app.tests) == 2, what="a second test")

                await pilot.press("E")
                await wait_until_pilot(pilot, lambda: isinstance(app.screen, LaunchScreen), what="the launch dialog")
                dialog = app.screen
                assert isinstance(dialog, LaunchScreen)

                def value(field: str) -> str:
                    return dialog.query_one(f"#{field}", Input).value

                assert value("plan") == "plan of test shop (from the server)"
                shown = {f: value(f) for f in ("name", "locations", "containers", "users", "duration", "rampup")}
                assert shown == {"name": "shop", "locations": "paris", "containers": "2", "users": "3",
                                 "duration": "60", "rampup": "5"}  # fmt: skip
                assert value("properties") == "host=127.0.0.1 think_ms=50" and value("image") == SETTINGS["image"]
                assert "plan of test shop (from the server)" in text_of(app, "#plan-status")
                assert "Launch a test like shop" in text_of(app, ".title")
                await pilot.press("ctrl+r")
                await wait_until_pilot(
                    pilot, lambda: "ctrl+l launches it" in text_of(app, "#preview"), what="the placement"
                )
                await pilot.press("ctrl+l")
                await wait_until_pilot(pilot, lambda: not isinstance(app.screen, LaunchScreen), what="launched")
                await wait_until_pilot(pilot, lambda: len(app.tests) == 3, what="a third test")

            with server.client() as http:
                listed = http.get("/tests").json()
                assert len(listed) == 3
                for test in listed:
                    assert {k: test[k] for k in KEPT} == {k: first[k] for k in KEPT}, test
                    assert len(test["containers"]) == 2
                    assert http.get(f"/tests/{test['id']}/plan").text == PLAN
    finally:
        agent.close()


async def test_keys_follow_the_state_of_the_test(
    server: ServerProcess, running: tuple[WireAgent, dict[str, Any], Beating]
) -> None:
    """The footer shows stop keys while the test runs, re-run and delete once it ended."""
    _, report, beating = running
    app = build_app(server)
    notes: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
        await pilot.press("t", "enter")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, TestScreen), what="the test screen")
        await wait_until_pilot(pilot, lambda: "· running ·" in text_of(app, "#test-title"), what="running")

        def shown() -> set[str]:
            return {b.binding.action for b in app.active_bindings.values() if b.binding.show}

        def footer_fits() -> bool:
            keys = [k for k in app.screen.query(FooterKey) if not k.has_class("-command-palette")]
            return {k.action for k in keys} == shown() and all(0 < k.region.right <= SIZE[0] for k in keys)

        async def fits_on_every_pane(state: str) -> None:
            for pane in ("l", "e", "m", "M", "c"):  # each pane adds its own keys (M: n for the next metrics)
                await pilot.press(pane)
                await wait_until_pilot(
                    pilot, footer_fits, what=f"every key of {state} test, pane {pane}, in 80 columns"
                )

        assert {"stop_test", "stop_container", "edit_copy"} <= shown() and not {"rerun", "delete_test"} & shown()
        await fits_on_every_pane("a running")
        await pilot.press("R", "delete")
        assert isinstance(app.screen, TestScreen) and any("R and del apply once it has ended" in n for n in notes)
        with server.client() as http:
            http.post(f"/tests/{report['test_id']}/stop").raise_for_status()
        beating.end()
        await wait_until_pilot(pilot, lambda: {"rerun", "delete_test"} <= shown(), what="the keys of an ended test")
        assert not {"stop_test", "stop_container"} & shown() and "edit_copy" in shown()
        await fits_on_every_pane("an ended")
        await pilot.press("s")
        assert isinstance(app.screen, TestScreen) and any("nothing to stop" in n for n in notes)
