"""The test screen at 80x24 without a mouse (issue 15 part 6), its criteria, verdict and warnings
(issue 15 parts 2 and 3) and its series the poller does not fetch (issue 12 part 7): a generator's
CPU and memory over the whole test, a label's own series. Against a real ``octotui server`` process
fed by an agent speaking the wire protocol, so that the test decides each heartbeat."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from textual.containers import VerticalScroll

from octotui.protocol import CriterionResult, Test
from octotui.tui.app import OctoApp
from octotui.tui.screens.test import TestScreen, verdict_markup
from octotui.tui.testlines import criterion_line, verdict_line, warning_lines
from octotui.tui.widgets.charts import Chart
from octotui.tui.widgets.tables import ContainersTable, LabelsTable
from tests.support.processes import ServerProcess
from tests.support.shots import save_screenshot
from tests.support.tui import SIZE, build_app, text_of
from tests.support.waiting import wait_until, wait_until_pilot
from tests.support.wire import PLAN
from tests.support.wireagent import WireAgent, label_stats

#: A container's error of six lines: the cause is on the last one.
ERROR = "\n".join([*(f"jmeter: line {n} of a long stack trace, not the cause yet" for n in range(1, 6)), "CAUSE-6"])


def screen_lines(app: OctoApp) -> list[str]:
    """What the terminal shows, line by line."""
    return ["".join(segment.text for segment in strip) for strip in app.screen._compositor.render_strips()]


def focus(screen: TestScreen) -> object:
    """The widget with the keyboard (as an object: each key may move it)."""
    return screen.focused


def hot_beat(agent: WireAgent, *reports: dict[str, Any], memory: float = 95.0) -> None:
    """A heartbeat whose machine is at ``memory`` % of its memory (90 % and over: saturated)."""
    host = {"ts": time.time(), "cpu_percent": 40.0, "memory_percent": memory, "memory_total": 2**33}
    body = {"host": host, "docker": {"available": True, "version": "28"}, "containers": list(reports)}
    agent.http.post(f"/agents/{agent.id}/heartbeat", json=body, headers=agent.auth).raise_for_status()


@contextlib.contextmanager
def beating(agent: WireAgent, *reports: dict[str, Any]) -> Iterator[None]:
    """``hot_beat`` with these reports every 0.5 s while the block runs (the agent stays online)."""
    stop = threading.Event()

    def run() -> None:
        for _ in range(600):
            hot_beat(agent, *reports)
            if stop.wait(0.5):
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def launch(server: ServerProcess, agent: WireAgent, containers: int, **extra: Any) -> list[dict[str, Any]]:
    """A test of ``containers`` containers on ``agent``, each acknowledged: their reports, running."""
    with server.client() as http:
        body = {"name": "shop", "plan": PLAN, "provider": "lab", "containers": containers, **extra}
        made = http.post("/tests", json=body)
        assert made.status_code == 201, made.text
    commands = agent.http.get(f"/agents/{agent.id}/commands", params={"timeout": 0}, headers=agent.auth).json()
    assert len(commands) == containers
    reports = []
    for cmd in commands:
        agent.http.post(f"/agents/{agent.id}/commands/{cmd['id']}/ack", json={"ok": True}, headers=agent.auth)
        reports.append({"container_id": cmd["container_id"], "test_id": cmd["test_id"], "command_id": cmd["id"],
                        "state": "running"})  # fmt: skip
    return reports


@pytest.fixture
def agent(server: ServerProcess) -> Iterator[WireAgent]:
    with server.client() as http:
        provider = http.post("/providers", json={"name": "lab"}).raise_for_status().json()
    wire = WireAgent(server, provider["token"])
    hot_beat(wire, memory=10.0)
    yield wire
    wire.close()


# --- in words, without Textual -------------------------------------------------------------------


def test_criteria_and_verdict_in_words() -> None:
    def criterion(expr: str, passed: bool | None, detail: str = "", actual: float | None = None) -> CriterionResult:
        return CriterionResult(
            expr=expr, metric="p95", op="<", threshold=1, passed=passed, detail=detail, actual=actual
        )

    ok = criterion("p95<500ms", True, "p95 312 ms, under 500 ms")
    bad = criterion("errors<1%", False, "errors 3.2 %, over 1 % by 2.2 %")
    pending = criterion("hits/s>100", None, actual=80.0)
    assert criterion_line(ok) == "✓ p95<500ms: p95 312 ms, under 500 ms"
    assert criterion_line(bad) == "✗ errors<1%: errors 3.2 %, over 1 % by 2.2 %"
    assert criterion_line(pending) == "· hits/s>100: pending (now 80)"
    test = Test.model_validate(
        {
            "id": "t",
            "name": "t",
            "provider": "p",
            "image": "i",
            "state": "finished",
            "created_at": "2026-01-01T00:00:00Z",
            "criteria": [ok.model_dump(), bad.model_dump()],
            "verdict": "failed",
            "warnings": ["results may be skewed: gen-b saturated for 45 s (CPU 97 %)", " "],
        }
    )
    assert verdict_line(test) == "verdict: failed · 1 of 2 criteria failed"
    markup = verdict_markup(test)
    assert markup.startswith("[bold $error]verdict: failed") and "[$success]✓ p95<500ms" in markup
    assert "[$error]✗ errors<1%" in markup
    assert warning_lines(test) == ["⚠ results may be skewed: gen-b saturated for 45 s (CPU 97 %)"]
    passed = test.model_copy(update={"criteria": [ok], "verdict": "passed"})
    assert verdict_line(passed) == "verdict: passed · 1 criterion passed"
    running = test.model_copy(update={"criteria": [ok, pending], "verdict": None, "state": "running"})
    assert verdict_line(running) == "verdict: pending · 1 of 2 pending"
    assert verdict_line(test.model_copy(update={"criteria": []})) == ""


# --- the screen at 80x24 -----------------------------------------------------------------------


async def test_every_part_is_read_with_the_keyboard_at_80x24(server: ServerProcess, agent: WireAgent) -> None:
    running, failed = launch(server, agent, 2, criteria=["p95<500ms", "errors<1%"])
    figures = {"samples": 400, "errors": 2, "rate": 40.0, "avg_ms": 50.0, "min_ms": 2, "max_ms": 400, "active": 6}
    reports = ({**running, "figures": figures}, {**failed, "state": "failed", "exit_code": 1, "error": ERROR})
    app = build_app(server)
    with beating(agent, *reports):
        async with app.run_test(size=SIZE) as pilot:
            await wait_until_pilot(pilot, lambda: bool(app.tests), what="the tests")
            await app.push_screen(TestScreen(running["test_id"]))
            screen = app.screen
            assert isinstance(screen, TestScreen)
            await wait_until_pilot(pilot, lambda: screen.query_one("#test-reason").display, what="the reason")
            await wait_until_pilot(pilot, lambda: screen.query_one("#test-warnings").display, what="the warning")
            await pilot.pause()
            assert "⚠ results may be skewed: gen1 saturated" in text_of(app, "#test-warnings")
            verdict = text_of(app, "#test-verdict")
            assert "verdict: pending" in verdict and "· p95<500ms: pending" in verdict and "· errors<1%" in verdict
            # The head keeps its place and the table below it its rows, inside the terminal.
            head = screen.query_one("#test-head", VerticalScroll)
            table = screen.query_one(ContainersTable)
            charts = screen.query_one("#test-charts")
            assert head.region.bottom <= charts.region.y and table.region.height >= 4
            assert table.region.bottom <= SIZE[1] - 1, "above the footer"
            save_screenshot(app, "test-criteria")
            shown = "\n".join(screen_lines(app))
            assert "CAUSE-6" not in shown and head.max_scroll_y > 0, "the head holds more than it shows"
            # Tab reaches the head, whose end shows the last line of the reason.
            assert focus(screen) is table
            await pilot.press("tab")
            assert focus(screen) is head
            await pilot.press("end")
            await pilot.pause()
            assert head.scroll_y == head.max_scroll_y
            assert "CAUSE-6" in "\n".join(screen_lines(app))
            save_screenshot(app, "test-head-scrolled")
            await pilot.press("home")
            await pilot.press("pagedown")
            await pilot.pause()
            assert head.scroll_y > 0, "pgdn scrolls the head"
            # And back to the containers, where end reaches the last row.
            await pilot.press("tab")
            assert focus(screen) is table
            await pilot.press("end")
            assert table.cursor_row == table.row_count - 1 == 1
            assert "#1 gen1 · failed" in text_of(app, "#container-line")


async def test_generator_history_and_a_labels_series(server: ServerProcess, agent: WireAgent) -> None:
    (report,) = launch(server, agent, 1)
    labels = [label_stats("GET /home", [20.0] * 10), label_stats("POST /login", [300.0] * 5, errors=1)]
    figures = {"samples": 15, "errors": 1, "rate": 5.0, "avg_ms": 110.0, "min_ms": 20, "max_ms": 300, "active": 2}
    beats = beating(agent, {**report, "figures": figures, "labels": labels, "cpu_percent": 20.0})
    before = 3  # the generator's history, before the screen opens: the server keeps a point a second

    def generator_points() -> int:
        with server.client() as http:
            series = http.get(f"/tests/{report['test_id']}/series", params={"generators": "true"}).json()
        return sum(len(g["points"]) for g in series["generators"])

    app = build_app(server)
    with beats:
        wait_until(lambda: generator_points() >= before, timeout=15, what="the generator's points")
        async with app.run_test(size=SIZE) as pilot:
            await wait_until_pilot(pilot, lambda: bool(app.tests), what="the tests")
            await app.push_screen(TestScreen(report["test_id"]))
            screen = app.screen
            assert isinstance(screen, TestScreen)
            await pilot.press("m")
            cpu = screen.query_one("#cpu-usage", Chart)
            await wait_until_pilot(pilot, lambda: cpu.title.startswith("CPU gen1 (machine)"), what="gen CPU")
            assert len(cpu.values) >= before - 1 and cpu.ceiling == 100.0, "from the test's start, not the screen's"
            mem = screen.query_one("#mem-usage", Chart)
            assert mem.title == "mem gen1 (machine)" and mem.values[-1] == 95.0
            save_screenshot(app, "test-generator")
            # The labels pane: the charts show the selected label's series.
            await pilot.press("l")
            rate = screen.query_one("#rate-chart", Chart)
            table = screen.query_one(LabelsTable)
            await wait_until_pilot(pilot, lambda: table.row_count == 2, what="the labels")
            first = table.selected_key
            await wait_until_pilot(pilot, lambda: rate.title == f"hits/s {first}", what="the label's series")
            assert screen.query_one("#err-chart", Chart).title == f"errors/s {first}" and rate.values
            save_screenshot(app, "test-label-series")
            await pilot.press("down")
            second = table.selected_key
            assert second != first
            await wait_until_pilot(pilot, lambda: rate.title == f"hits/s {second}", what="the other label's series")
            await pilot.press("c")
            await pilot.pause()
            assert rate.title == "hits/s", "the whole test's again"
