"""The dashboard's side of issue 12 parts 4 and 6: the launch dialog uploads the files it is given
(a split one, a refused one deleted again) and an ended test is compared with an earlier one.

Against a real ``octotui server`` process and a wire agent (the test decides each heartbeat).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual.widgets import Input, OptionList

from octotui.protocol import Comparison, LabelDelta, Test
from octotui.tui.rows import comparison_line, comparison_rows
from octotui.tui.screens.baseline import BaselinePicker, baseline_candidates
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.panes import PaneTabs
from octotui.tui.widgets.tables import ComparisonTable
from tests.support.processes import ServerProcess
from tests.support.tui import SIZE, build_app, text_of
from tests.support.waiting import wait_until_pilot
from tests.support.wire import PLAN
from tests.support.wireagent import WireAgent, label_stats


def lab(server: ServerProcess) -> WireAgent:
    """Provider ``lab`` with one wire agent online in it (close it when done)."""
    with server.client() as http:
        provider = http.post("/providers", json={"name": "lab"}).raise_for_status().json()
    agent = WireAgent(server, provider["token"])
    agent.beat()
    return agent


def api(server: ServerProcess, path: str) -> Any:
    with server.client() as http:
        return http.get(path).raise_for_status().json()


# --- the launch dialog's Files field: uploaded at launch, a refusal leaves no file behind -----------


async def test_a_split_text_file_is_uploaded_and_the_test_brings_it(server: ServerProcess, tmp_path: Path) -> None:
    agent = lab(server)
    try:
        plan = tmp_path / "shop.jmx"
        plan.write_text(PLAN)
        users = tmp_path / "users.csv"
        users.write_text("id\n" + "".join(f"{i}\n" for i in range(100)))
        app = build_app(server)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until_pilot(pilot, lambda: bool(app.providers), what="providers")
            await pilot.press("l")
            dialog = app.screen
            assert isinstance(dialog, LaunchScreen)
            for field, value in {"plan": str(plan), "containers": "1", "files": f"{users}:split:header"}.items():
                dialog.query_one(f"#{field}", Input).value = value
            agent.beat()  # online at the preview: one beat at the start went late on a loaded machine
            await pilot.press("ctrl+r")
            await wait_until_pilot(
                pilot, lambda: "ctrl+l launches it" in text_of(app, "#preview"), what="the placement"
            )
            assert "1 file to upload (" in text_of(app, "#preview") and "users.csv split +header" in text_of(
                app, "#preview"
            )
            assert api(server, "/files") == [], "nothing uploaded by a preview"
            agent.beat()
            await pilot.press("ctrl+l")
            await wait_until_pilot(pilot, lambda: not isinstance(app.screen, LaunchScreen), what="launched")
        (test,) = api(server, "/tests")
        (uploaded,) = api(server, "/files")
        assert uploaded["name"] == "users.csv" and uploaded["size"] == users.stat().st_size
        assert api(server, f"/tests/{test['id']}")["files"] == [{"id": uploaded["id"], "split": True, "header": True}]
    finally:
        agent.close()


async def test_a_binary_split_is_refused_and_its_upload_deleted(server: ServerProcess, tmp_path: Path) -> None:
    agent = lab(server)
    try:
        plan = tmp_path / "shop.jmx"
        plan.write_text(PLAN)
        blob = tmp_path / "blob.bin"
        blob.write_bytes(bytes(range(256)) * 64)
        app = build_app(server)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until_pilot(pilot, lambda: bool(app.providers), what="providers")
            await pilot.press("l")
            dialog = app.screen
            assert isinstance(dialog, LaunchScreen)
            for field, value in {"plan": str(plan), "containers": "1", "files": f"{blob}:split"}.items():
                dialog.query_one(f"#{field}", Input).value = value
            agent.beat()  # online at the preview: one beat at the start went late on a loaded machine
            await pilot.press("ctrl+r")
            await wait_until_pilot(
                pilot, lambda: "ctrl+l launches it" in text_of(app, "#preview"), what="the placement"
            )
            agent.beat()
            await pilot.press("ctrl+l")
            await wait_until_pilot(pilot, lambda: "✗" in text_of(app, "#preview"), what="the refusal")
            refusal = text_of(app, "#preview")
            assert app.screen is dialog and "binary" in refusal, refusal
            assert any(n.title == "Launch refused" for n in app._notifications)
            await wait_until_pilot(pilot, lambda: api(server, "/files") == [], what="the upload deleted")
        assert api(server, "/tests") == []
    finally:
        agent.close()


# --- a test against its baseline, without Textual ------------------------------------------------


def test_comparison_rows_put_regressions_first_in_the_error_colour() -> None:
    comparison = Comparison(
        test_id="t2",
        baseline_id="t1",
        regressions=1,
        labels=[
            LabelDelta(label="home", avg_ms=20, baseline_avg_ms=21, p95_ms=40, baseline_p95_ms=41,
                       error_percent=0, baseline_error_percent=0, throughput=10, baseline_throughput=10),
            LabelDelta(label="cart", avg_ms=300, baseline_avg_ms=100, p95_ms=500, baseline_p95_ms=150,
                       error_percent=0, baseline_error_percent=0, throughput=5, baseline_throughput=10,
                       regression=True, reasons=["avg +200 %", "p95 +233 %"]),
            LabelDelta(label="new", avg_ms=5, p95_ms=9, error_percent=0, throughput=1),
        ],
    )  # fmt: skip
    rows, order = comparison_rows(comparison)
    assert sorted(order, key=order.__getitem__) == ["cart", "home", "new"]
    assert [c.text for c in rows["cart"]] == ["cart", "300/100", "500/150", "0/0", "5.0/10.0"]
    assert {c.style for c in rows["cart"]} == {"error"} and {c.style for c in rows["home"]} == {None}
    assert [c.text for c in rows["new"]][1:3] == ["5.0/-", "9.0/-"], "absent from the baseline"
    assert comparison_line(comparison.labels[1]) == "cart: regression: avg +200 %; p95 +233 %"
    assert comparison_line(comparison.labels[0]) == "home: within the tolerances"


# --- b on an ended test: pick a baseline, see the regressions first -------------------------------


def ended_test(server: ServerProcess, agent: WireAgent, labels: list[dict[str, Any]]) -> str:
    """A one-container test "shop" on ``agent`` that reports ``labels`` and finishes; its id."""
    with server.client() as http:
        made = http.post("/tests", json={"name": "shop", "plan": PLAN, "provider": "lab", "containers": 1})
        assert made.status_code == 201, made.text
    report = agent.take_launch()
    agent.beat({**report, "labels": labels})
    agent.beat({**report, "state": "finished", "exit_code": 0, "labels": labels})
    test = api(server, f"/tests/{report['test_id']}")
    assert test["state"] == "finished", test
    return str(test["id"])


async def test_b_compares_an_ended_test_with_an_earlier_one(server: ServerProcess) -> None:
    agent = lab(server)
    try:
        home = label_stats("GET /home", [20.0] * 20)
        before = ended_test(server, agent, [home, label_stats("POST /login", [50.0] * 20)])
        after = ended_test(server, agent, [home, label_stats("POST /login", [200.0] * 20)])  # 4x slower
        app = build_app(server, read_only=True)  # a read: read-only dashboards compare too
        async with app.run_test(size=SIZE) as pilot:
            await wait_until_pilot(pilot, lambda: len(app.tests) == 2, what="the two tests")
            screen = TestScreen(after)
            await app.push_screen(screen)
            await wait_until_pilot(pilot, lambda: screen.ended, what="the test, ended")
            tabs = screen.query_one(PaneTabs)
            assert tabs.text_of("test-baseline") == "b baseline", "no count before a comparison"
            await pilot.press("b")
            await wait_until_pilot(pilot, lambda: isinstance(app.screen, BaselinePicker), what="the picker")
            options = app.screen.query_one(OptionList)
            assert options.option_count == 1 and options.get_option_at_index(0).id == before
            await pilot.press("escape")
            assert app.screen is screen and screen.comparison is None, "esc cancels"

            await pilot.press("b")
            await wait_until_pilot(pilot, lambda: isinstance(app.screen, BaselinePicker), what="the picker")
            await pilot.press("enter")
            await wait_until_pilot(pilot, lambda: screen.comparison is not None, what="the comparison")
            assert screen.pane == "test-baseline"
            assert tabs.text_of("test-baseline") == "b baseline 1"
            assert tabs.query_one("#tab-test-baseline").has_class("-alert")
            table = screen.query_one(ComparisonTable)
            assert table.row_keys == ["POST /login", "GET /home"], "the regression first"
            login = table.row_cells("POST /login")
            assert login is not None and [c.text for c in login[:2]] == ["POST /login", "200/50"]
            assert {c.style for c in login} == {"error"}
            assert text_of(app, "#container-line").startswith("POST /login: regression: avg +300 %")
    finally:
        agent.close()


def test_baseline_candidates_put_the_same_provider_and_name_first_newest_first() -> None:
    def made(test_id: str, name: str, minute: int, state: str = "finished", provider: str = "p1") -> Test:
        when = datetime(2026, 1, 1, 12, minute, tzinfo=UTC)
        return Test(id=test_id, name=name, state=state, provider=provider, image="i", created_at=when)

    this = made("t9", "shop", 50)
    tests = [
        made("t1", "shop", 1), made("t2", "other", 40), made("t3", "shop", 30), made("t4", "shop", 45, "running"),
        made("t5", "shop", 20, provider="p2"), made("t6", "shop", 55), this,
    ]  # fmt: skip
    assert [t.id for t in baseline_candidates(this, tests)] == ["t3", "t1", "t2", "t5"]
