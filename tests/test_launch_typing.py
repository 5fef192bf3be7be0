"""The launch dialog keeps every keystroke: keys delivered all at once (tmux send-keys, typing over
a slow ssh link) and pastes land in the field they were typed for, Tabs included; the criteria,
monitors and "stop on critical" go with the launch, and a refused criterion shows on its field with
every value kept. Pilot against a real server process at 80x24."""

from __future__ import annotations

from textual import events
from textual.widgets import Checkbox, Input

from octotui.tui.app import OctoApp
from octotui.tui.screens.launch import FIELDS, LaunchScreen
from tests.support.keys import burst, typed
from tests.support.processes import ServerProcess
from tests.support.tui import PLAN, SIZE, build_app, make_provider, text_of
from tests.support.waiting import wait_until_pilot


def values(dialog: LaunchScreen) -> dict[str, str]:
    return {name: dialog.query_one(f"#{name}", Input).value for name in FIELDS}


async def open_dialog(app: OctoApp, pilot: object) -> LaunchScreen:
    await wait_until_pilot(pilot, lambda: bool(app.providers), what="providers")  # type: ignore[arg-type]
    await pilot.press("l")  # type: ignore[attr-defined]
    dialog = app.screen
    assert isinstance(dialog, LaunchScreen)
    for name in FIELDS:  # empty fields: what is typed is all they hold
        dialog.query_one(f"#{name}", Input).value = ""
    assert dialog.focused is dialog.query_one("#plan", Input)
    return dialog


async def test_keys_sent_at_once_land_in_their_fields(server: ServerProcess) -> None:
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(app, pilot)
        keys = typed(
            str(PLAN), "\t", "fast-test", "\t\t", "paris,us-east", "\t", "3", "\t", "25", "\t", "120", "\t", "10",
            "\t", "a=1 b=2", "\t\t\t", "p95<500ms; errors<1%", "\t", "db, web", ["shift+tab", "end"], "x",
        )  # fmt: skip
        sent = burst(app, keys)
        assert sent == len(keys) > 100
        await wait_until_pilot(pilot, lambda: dialog.query_one("#criteria", Input).value.endswith("x"), what="keys")
        await pilot.pause()  # the keys that bubble up to the app's bindings ("end") are through
        assert values(dialog) == {
            "plan": str(PLAN),
            "name": "fast-test",
            "locations": "paris,us-east",
            "containers": "3",
            "users": "25",
            "duration": "120",
            "rampup": "10",
            "properties": "a=1 b=2",
            "image": "",
            "files": "",
            "criteria": "p95<500ms; errors<1%x",
            "monitors": "db, web",
        }
        form = dialog.read_form()
        assert form.spec is not None, form.problem
        assert form.spec.criteria == ["p95<500ms", "errors<1%x"] and form.spec.monitors == ["db", "web"]


async def test_a_paste_keeps_every_character_and_tab(server: ServerProcess) -> None:
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(app, pilot)
        # A bracketed paste of a row of values (tab-separated, as copied from a spreadsheet).
        app.post_message(events.Paste(f"{PLAN}\tpasted\tlab\tparis\t2\t5\n"))
        await pilot.pause()
        got = values(dialog)
        assert (got["plan"], got["name"], got["locations"], got["containers"], got["users"]) == (
            str(PLAN),
            "pasted",
            "paris",
            "2",
            "5",
        )
        assert dialog.focused is dialog.query_one("#users", Input)
        await pilot.press("0")  # typed after the paste: added, not replacing what was pasted
        assert dialog.query_one("#users", Input).value == "50"
        # Several lines pasted into the criteria: one criterion per line, none dropped.
        dialog.set_focus(dialog.query_one("#criteria", Input))
        await pilot.pause()
        dialog.query_one("#criteria", Input).value = ""
        app.post_message(events.Paste("p95<500ms\r\nerrors<1%\nhits/s>100\n"))
        await pilot.pause()
        assert dialog.query_one("#criteria", Input).value == "p95<500ms; errors<1%; hits/s>100"
        form = dialog.read_form()
        assert form.spec is not None and form.spec.criteria == ["p95<500ms", "errors<1%", "hits/s>100"]


async def test_criteria_monitors_and_stop_go_with_the_launch(server: ServerProcess) -> None:
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(app, pilot)
        dialog.query_one("#plan", Input).value = str(PLAN)
        dialog.query_one("#containers", Input).value = "1"
        dialog.query_one("#criteria", Input).value = "p95<500ms;;  errors<1% ;"
        dialog.query_one("#monitors", Input).value = "db server, web"
        form = dialog.read_form()
        assert form.spec is not None
        assert (form.spec.criteria, form.spec.monitors, form.spec.stop_on_critical) == (
            ["p95<500ms", "errors<1%"],
            ["db server", "web"],
            False,
        )
        dialog.query_one("#stop_on_critical", Checkbox).value = True
        await pilot.pause()
        form = dialog.read_form()
        assert form.spec is not None and form.spec.stop_on_critical
        dialog.query_one("#monitors", Input).value = ""
        form = dialog.read_form()
        assert form.spec is not None and any("no monitor named" in w for w in form.warnings)


async def test_too_many_criteria_are_said_on_their_field(server: ServerProcess) -> None:
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(app, pilot)
        typed_values = {
            "plan": str(PLAN),
            "containers": "1",
            "criteria": "; ".join(["p95<500ms"] * 51),
            "monitors": "db",
        }
        for name, value in typed_values.items():
            dialog.query_one(f"#{name}", Input).value = value
        await pilot.press("ctrl+r")
        await wait_until_pilot(pilot, lambda: "Criteria" in text_of(app, "#criteria-status"), what="criteria note")
        note = dialog.query_one("#criteria-status")
        assert "at most 50, got 51" in text_of(app, "#criteria-status") and note.display
        assert note.region.bottom <= SIZE[1]
        assert "at most 50" in text_of(app, "#preview")
        got = values(dialog)
        assert all(got[name] == value for name, value in typed_values.items())
        # Changing the criteria clears the note.
        dialog.query_one("#criteria", Input).value = "p95<500ms"
        await pilot.pause()
        assert not note.display
    with server.client() as http:
        assert http.get("/tests").json() == []


async def test_editing_keys_sent_at_once_act_where_typed(server: ServerProcess) -> None:
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_dialog(app, pilot)
        # Backspace, home and ctrl+u are the field's own bindings, which Textual runs once the key
        # has bubbled up to the app: after the keys behind them, or in the next field after a Tab.
        keys = typed(
            "planx", ["backspace"], ".jmx", ["home"], "/", "\t", "nam", ["backspace", "backspace"], "ew",
            "\t\t", "zzz", ["ctrl+u"], "paris", "\t", "3", "\t", "9",
        )  # fmt: skip
        burst(app, keys)
        await wait_until_pilot(pilot, lambda: dialog.query_one("#users", Input).value == "9", what="keys")
        await pilot.pause()
        got = values(dialog)
        assert (got["plan"], got["name"], got["locations"], got["containers"]) == ("/plan.jmx", "new", "paris", "3")
