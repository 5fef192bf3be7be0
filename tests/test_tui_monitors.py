"""The monitors screens, driven by Pilot at 80x24 without a mouse against a real server process and
a wire-level agent that reports monitor samples: states in words, last values, alarms raised and
marked on the detail's charts; an admin's add with credentials that never show; read-only refused;
and the threshold lines the form takes, each kind of bad one refused with its reason."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from textual.widgets import Input, Label, TextArea

from octotui.tui.app import OctoApp
from octotui.tui.monitorlines import (
    alarm_marks,
    alarm_rows,
    missing_raised,
    on_times,
    parse_threshold,
    parse_thresholds,
    split_metrics,
    threshold_text,
    with_raised,
)
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.monitor import MarkedChart, MonitorScreen, TestMonitorsPane
from octotui.tui.screens.monitorform import MonitorForm
from octotui.tui.screens.monitors import AlarmBadge, AlarmsTable, MonitorsScreen, MonitorsTable
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.charts import Chart
from tests.support.monitorkit import PASSWORD
from tests.support.monitorwire import MonitorBeating
from tests.support.processes import ServerProcess
from tests.support.shots import save_screenshot
from tests.support.tui import SIZE, build_app, make_provider
from tests.support.waiting import wait_until, wait_until_pilot
from tests.support.wire import PLAN

NODE = "http://127.0.0.1:9/metrics"
WEB = "http://127.0.0.1:7/health"


@pytest.fixture
def lab(server: ServerProcess) -> Iterator[MonitorBeating]:
    """Provider ``lab`` and its wire agent ``gen1`` beating, reporting its monitors' samples."""
    provider = make_provider(server)
    agent = MonitorBeating(server, provider["token"]).start()
    yield agent
    agent.close()


def create_monitor(server: ServerProcess, **body: Any) -> dict[str, Any]:
    with server.client() as http:
        answer = http.post("/monitors", json=body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())


def monitors(server: ServerProcess) -> list[dict[str, Any]]:
    with server.client() as http:
        return list(http.get("/monitors").raise_for_status().json())


def read_only_token(server: ServerProcess) -> str:
    with server.client() as http:
        return str(
            http.post("/tokens", json={"name": "watcher", "role": "read-only"}).raise_for_status().json()["token"]
        )


async def open_monitors(app: OctoApp, pilot: Any) -> MonitorsScreen:
    await pilot.press("colon", *"monitors", "enter")
    await wait_until_pilot(pilot, lambda: isinstance(app.screen, MonitorsScreen), what=":monitors opens the screen")
    assert isinstance(app.screen, MonitorsScreen)
    return app.screen


def screen_text(app: OctoApp) -> str:
    """Everything the terminal shows now."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def notes(app: OctoApp) -> list[str]:
    return [n.message for n in app._notifications]


async def test_monitors_show_state_in_words_last_values_and_alarms_raised(
    server: ServerProcess, lab: MonitorBeating
) -> None:
    lab.reports[NODE] = lambda n: {"node_load1": 6.0 + n % 3, "up": 1.0}
    lab.reports[WEB] = lambda n: "unreachable: connection refused"
    wait_until(lambda: lab.beats > 0, what="the agent's first heartbeat")
    threshold = {"metric": "node_load1", "severity": "critical", "above": 4, "for": 0}
    node = create_monitor(server, name="node", agent=lab.id, kind="prometheus", target=NODE, interval=1,
                          thresholds=[threshold])  # fmt: skip
    create_monitor(server, name="web", agent=lab.id, kind="http", target=WEB, interval=1)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        # The main screen's badge while an alarm is raised (critical: in the error colour).
        badge = app.screen.query_one(AlarmBadge)
        await wait_until_pilot(pilot, lambda: badge.count == 1, what="the main screen's alarm badge")
        await wait_until_pilot(pilot, lambda: " 1 ALARM " in screen_text(app), what="the badge drawn")
        assert badge.display and badge.has_class("-critical")
        save_screenshot(app, "main-alarms")
        screen = await open_monitors(app, pilot)
        table, alarms = screen.query_one(MonitorsTable), screen.query_one(AlarmsTable)

        def shown() -> bool:
            web = screen.monitors.get(next((m for m in screen.monitors if screen.monitors[m].name == "web"), ""))
            return table.row_count == 2 and alarms.row_count >= 1 and web is not None and web.state == "error"

        await wait_until_pilot(pilot, shown, what="both monitors, web in error, node's alarm raised")
        text = screen_text(app)
        assert "unreachable" in text  # the error in words (in the error colour), cut by the column
        assert "critical" in text and "active" in text
        # At 80 columns the last column is whole, its header and its values: the target and the
        # error give way (the line under the table holds them whole).
        lines = [table.render_line(y).text.rstrip() for y in range(table.row_count + 1)]
        assert lines[0].endswith("Last values") and all(len(line) < SIZE[0] for line in lines), lines
        node_row = next(line for line in lines if line.lstrip().startswith("node"))
        assert re.search(r"node_load1=\d+(\.\d+)?  up=1$", node_row), node_row
        assert table.region.right <= SIZE[0] and alarms.region.bottom <= SIZE[1] - 1
        assert "1 in error" in text and "1 alarm(s) raised" in text
        save_screenshot(app, "monitors")
        # The selected row in full under the table: the web monitor's whole error.
        while (screen._selected() or node).name != "web":  # type: ignore[union-attr]
            await pilot.press("down")
        await pilot.pause()
        assert "error: unreachable: connection refused" in screen_text(app)
        # Its detail by keys only: the chart of node_load1 with the alarm marked under it.
        while screen._selected().name != "node":  # type: ignore[union-attr]
            await pilot.press("up")
        await pilot.press("enter")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, MonitorScreen), what="the detail")
        detail = app.screen
        assert isinstance(detail, MonitorScreen)
        chart = detail.query_one("#chart-a", MarkedChart)
        await wait_until_pilot(pilot, lambda: chart.metric == "node_load1" and len(chart.values) >= 2,
                               what="node_load1 charted")  # fmt: skip
        await wait_until_pilot(pilot, lambda: "▲" in screen_text(app), what="the alarm marked under the chart")
        text = screen_text(app)
        assert "thresholds: node_load1 critical above 4" in text
        assert "critical · node · node_load1 at " in text and "still raised" in text
        save_screenshot(app, "monitor")
        await pilot.press("escape")
        assert isinstance(app.screen, MonitorsScreen)
        # Back in bounds: the alarm is cleared, the badge goes.
        lab.reports[NODE] = lambda n: {"node_load1": 1.0, "up": 1.0}
        await pilot.press("escape")
        await wait_until_pilot(pilot, lambda: badge.count == 0 and not badge.display, what="no badge once cleared")


async def test_admin_adds_a_monitor_with_credentials_the_screen_never_shows(
    server: ServerProcess, lab: MonitorBeating
) -> None:
    wait_until(lambda: lab.beats > 0, what="the agent's first heartbeat")
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: len(app.agents) == 1, what="the agent listed")
        await open_monitors(app, pilot)
        await pilot.press("n")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, MonitorForm), what="the form")
        form = app.screen
        assert isinstance(form, MonitorForm)
        # Tab from field to field (kind, agent and mode keep their defaults: prometheus, the one
        # agent, always).
        await pilot.press(*"node", "tab", "tab", "tab", *NODE)
        await pilot.press("tab", "end", "backspace", "backspace", *"2", "tab", "tab", *"monitor", "tab", *PASSWORD)
        password = form.query_one("#password", Input)
        assert password.value == PASSWORD and PASSWORD not in screen_text(app), "masked while typed"
        assert PASSWORD not in save_screenshot(app, "monitor-form")
        form.query_one("#thresholds").focus()
        await pilot.press(*"node_load1 warning above 2 for 5")
        # A bad line first: refused with its reason, nothing sent.
        await pilot.press("enter", *"up critical below")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "threshold line 2: below needs a value" in screen_text(app)
        assert monitors(server) == []
        await pilot.press(*" 1", "ctrl+s")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, MonitorsScreen), what="the form closes")
        (made,) = monitors(server)
        assert made["name"] == "node" and made["target"] == NODE and made["interval"] == 2
        assert sorted(made["credentials_set"]) == ["password", "username"] and PASSWORD not in str(made)
        assert [t["metric"] for t in made["thresholds"]] == ["node_load1", "up"]
        # Sent to its agent only, and nowhere on screen or in the app's widgets after submit.
        wait_until(lambda: (lab.assignments.get(made["id"]) or {}).get("credentials", {}).get("password") == PASSWORD,
                   what="the credentials assigned to the agent")  # fmt: skip
        assert any("credentials kept by the server" in n for n in notes(app))
        assert PASSWORD not in screen_text(app)
        for screen in app.screen_stack:
            for field in screen.query(Input):
                assert PASSWORD not in field.value
        assert PASSWORD not in password.value
        # Editing shows which fields are set, never their values.
        await wait_until_pilot(pilot, lambda: app.screen.query_one(MonitorsTable).row_count == 1, what="the row")
        await pilot.press("e")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, MonitorForm), what="the edit form")
        assert f"set: {', '.join(made['credentials_set'])} (left empty: kept" in screen_text(app)
        assert all(f.value == "" for f in app.screen.query(Input) if f.password)
        # Saved with the credential fields left empty: the server keeps them.
        app.screen.query_one("#interval", Input).focus()
        await pilot.press("end", "backspace", "3", "ctrl+s")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, MonitorsScreen), what="the edit saved")
        (saved,) = monitors(server)
        assert saved["interval"] == 3 and sorted(saved["credentials_set"]) == ["password", "username"]

        def reassigned() -> bool:
            held = lab.assignments.get(made["id"]) or {}
            return held.get("interval") == 3 and (held.get("credentials") or {}).get("password") == PASSWORD

        wait_until(reassigned, what="the agent told the new interval, the same credentials")
        # Deleting asks first, by keys only.
        await pilot.press("delete")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_until_pilot(pilot, lambda: monitors(server) == [], what="the monitor deleted")
        await wait_until_pilot(pilot, lambda: app.screen.query_one(MonitorsTable).row_count == 0, what="row gone")


#: Each kind of bad form and what the form says (the server's reason for the last three).
BAD_FORMS: list[tuple[dict[str, str], str]] = [
    ({"#name": ""}, "name: type one"),
    ({"#interval": "soon"}, "interval: a number of seconds"),
    ({"#interval": "0.5"}, "interval: must be at least 1"),
    ({"#key-file": "/nonexistent/id_ed25519"}, "key file /nonexistent/id_ed25519: No such file"),
    ({"thresholds": "up above 1 for ever"}, "threshold line 1: for 'ever': a duration"),
    ({"#target": "127.0.0.1:9100"}, "an http:// or https:// URL"),
    ({"#username": "u"}, "a username and a password together"),
    ({"thresholds": "up above 1\nup above 2"}, "a second warning threshold on the same metric"),
]


async def test_each_bad_form_says_why_and_adds_nothing(server: ServerProcess, lab: MonitorBeating) -> None:
    wait_until(lambda: lab.beats > 0, what="the agent's first heartbeat")
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: len(app.agents) == 1, what="the agent listed")
        await open_monitors(app, pilot)
        await pilot.press("n")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, MonitorForm), what="the form")
        form = app.screen
        error = form.query_one("#form-error", Label)
        good = {"#name": "node", "#target": NODE, "#interval": "5", "#username": "", "#key-file": "", "thresholds": ""}
        for fields, why in BAD_FORMS:
            for selector, value in {**good, **fields}.items():
                if selector == "thresholds":
                    form.query_one("#thresholds", TextArea).text = value
                else:
                    form.query_one(selector, Input).value = value
            error.update("")
            await pilot.press("ctrl+s")
            await wait_until_pilot(pilot, lambda: "✗" in str(error.render()), what=f"a refusal: {why}")
            assert why in str(error.render()), fields
            assert app.screen is form and monitors(server) == []


async def test_read_only_sees_monitors_and_every_change_is_refused_in_words(
    server: ServerProcess, lab: MonitorBeating
) -> None:
    wait_until(lambda: lab.beats > 0, what="the agent's first heartbeat")
    create_monitor(server, name="node", agent=lab.id, kind="prometheus", target=NODE, interval=1,
                   credentials={"username": "u", "password": PASSWORD})  # fmt: skip
    before = monitors(server)
    app = build_app(server, token=read_only_token(server))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.read_only, what="read-only role from /info")
        screen = await open_monitors(app, pilot)
        await wait_until_pilot(pilot, lambda: screen.query_one(MonitorsTable).row_count == 1, what="the row")
        for key in ("n", "e", "delete"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is screen, f"{key} opened nothing"
        assert notes(app).count("read-only: changing monitors is disabled (a read-only token sees monitors"
                                " and values only)") == 3  # fmt: skip
        await pilot.press("enter")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, MonitorScreen), what="the detail")
        await pilot.press("e")
        assert isinstance(app.screen, MonitorScreen)
        assert PASSWORD not in screen_text(app)
    after = monitors(server)
    assert [(m["id"], m["updated_at"]) for m in after] == [(m["id"], m["updated_at"]) for m in before]


def test_threshold_lines_read_as_the_server_takes_them() -> None:
    parsed = parse_threshold("node_load1 critical above 4 for 30s")
    assert not isinstance(parsed, str)
    assert (parsed.metric, parsed.severity, parsed.above, parsed.below, parsed.for_s) == (
        "node_load1",
        "critical",
        4,
        None,
        30,
    )
    assert threshold_text(parsed) == "node_load1 critical above 4 for 30s"
    ranged = parse_threshold('pg_up{db="a b"} below 1 above 9 for 2m')
    assert not isinstance(ranged, str)
    assert (ranged.metric, ranged.severity, ranged.below, ranged.above, ranged.for_s) == (
        'pg_up{db="a b"}',
        "warning",
        1,
        9,
        120,
    )
    made, problem = parse_thresholds("a above 1\n\n# a comment\nb below 2")
    assert problem is None and [t.metric for t in made] == ["a", "b"]
    assert split_metrics('node_load1, node_cpu{mode="idle",cpu="0"}\nup') == [
        "node_load1",
        'node_cpu{mode="idle",cpu="0"}',
        "up",
    ]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("above 4", "starts with the metric's name"),
        ("load", "say when it alarms"),
        ("load critical", "say when it alarms"),
        ("load above", "above needs a value"),
        ("load above four", "above 'four': not a number"),
        ("load above nan", "not a number"),
        ("load above inf", "not a number"),
        ("load below 1 below 2", "below given twice"),
        ("load warning critical above 1", "one severity"),
        ("load above 1 for soon", "a duration"),
        ("load above 1 for -3s", "a duration"),
        ("load above 1 for 2d", "a duration"),
        ("load above 1 for 25h", "for: must be at most 86400"),
        ("load above 1 sometimes", "unexpected 'sometimes'"),
    ],
)
def test_each_bad_threshold_line_says_why(line: str, why: str) -> None:
    parsed = parse_threshold(line)
    assert isinstance(parsed, str) and why in parsed, parsed
    _, problem = parse_thresholds(f"ok above 1\n{line}")
    assert problem is not None and problem.startswith("threshold line 2: ")


def test_raised_alarms_older_than_the_recent_ones_are_still_listed() -> None:
    from datetime import UTC, datetime

    from octotui.protocol import Alarm, Monitor

    def alarm(n: int, ended: bool) -> Alarm:
        started = datetime.fromtimestamp(1000 + n, UTC)
        return Alarm(id=n, monitor="m", metric=f"x{n}", severity="warning", started_at=started,
                     ended_at=datetime.fromtimestamp(2000 + n, UTC) if ended else None)  # fmt: skip

    monitor = Monitor(id="m", name="node", agent="a", kind="http", target="http://127.0.0.1/", interval=5, alarms=2)
    recent = [alarm(n, ended=n != 99) for n in range(99, 49, -1)]  # the newest 50: one raised
    assert missing_raised(recent, [monitor])
    merged = with_raised([alarm(1, False), alarm(99, False)], recent)
    assert [a.id for a in merged[:3]] == [1, 99, 98] and len(merged) == 51
    assert not missing_raised(merged, [monitor])
    _, order = alarm_rows(merged)
    assert sorted(order, key=order.__getitem__)[:2] == ["99", "1"]  # raised first, newest first


def test_alarm_marks_start_and_span_their_columns() -> None:
    from datetime import UTC, datetime

    from octotui.protocol import Alarm

    def at(ts: float) -> datetime:
        return datetime.fromtimestamp(ts, UTC)

    raised = Alarm(id=1, monitor="m", metric="x", severity="critical", started_at=at(1003), ended_at=at(1005))
    other = Alarm(id=2, monitor="m", metric="y", severity="warning", started_at=at(1000))
    assert alarm_marks([raised, other], "x", [0, 2, 4, 6, 8], origin=1000, now=1010) == " ▲━  "
    assert alarm_marks([other], "y", [0, 2, 4], origin=1000, now=1010) == "▲━━"


async def test_test_screen_shows_monitor_metrics_on_the_response_times_axis(
    server: ServerProcess, lab: MonitorBeating
) -> None:
    lab.reports[NODE] = lambda n: {"node_load1": 9.0 if n % 40 < 20 else 1.0}
    wait_until(lambda: lab.beats > 0, what="the agent's first heartbeat")
    threshold = {"metric": "node_load1", "severity": "critical", "above": 4, "for": 0}
    create_monitor(server, name="node", agent=lab.id, kind="prometheus", target=NODE, interval=1, mode="tests",
                   thresholds=[threshold])  # fmt: skip
    with server.client() as http:
        made = http.post("/tests", json={"name": "shop", "plan": PLAN, "provider": "lab", "containers": 1,
                                         "duration": 600, "monitors": ["node"]})  # fmt: skip
        assert made.status_code == 201, made.text
    lab.container = wait_until(lab.agent.take_launch, what="the launch")
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: bool(app.tests), what="the test listed")
        await pilot.press("colon", *"test shop", "enter")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, TestScreen), what="the test screen")
        await pilot.press("M")
        pane = app.screen.query_one(TestMonitorsPane)
        chart, rt = pane.query_one("#tm-a", MarkedChart), app.screen.query_one("#rt-chart", Chart)

        def aligned() -> bool:
            return len(chart.values) >= 3 and chart.times == rt.times and chart.metric == "node_load1"

        await wait_until_pilot(pilot, aligned, what="node_load1 on the response times' time axis")
        await wait_until_pilot(pilot, lambda: "▲" in screen_text(app), what="the test's alarm marked")
        text = screen_text(app)
        assert "1 monitor(s): node" in text and "critical node node_load1 9 (above 4) " in text
        save_screenshot(app, "test-monitors")


def test_a_monitor_read_at_the_response_times() -> None:
    points = [(10.0, 1.0), (12.0, 5.0), (15.0, 2.0)]
    assert on_times(points, [9.0, 10.0, 11.0, 12.5, 14.9, 15.0, 20.0]) == (0.0, 1.0, 1.0, 5.0, 5.0, 2.0, 2.0)
    assert on_times([], [1.0, 2.0]) == (0.0, 0.0)
