"""The dialogs' forms as a new user met them: messages in full at 80x24 (wrapped, never cut),
friendly wording, numbers refused rather than changed, a launch without an answer, the install
dialog of the embedded mode and the help page. Pilot against a real server process (and a real
agent where a placement is needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.text import Text
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Input

from octotui.client import Client
from octotui.protocol import Placement, PlacementItem
from octotui.tui.app import DashboardSettings, OctoApp, create_app
from octotui.tui.format import human_size
from octotui.tui.forms import placement_text
from octotui.tui.screens.help import HELP, HelpScreen
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.prompt import PromptScreen
from octotui.tui.screens.provider import ProviderScreen
from tests.support.faultproxy import FaultProxy
from tests.support.processes import ROOT, AgentProcess, ServerProcess
from tests.support.tui import SIZE, build_app, docker_lab, make_provider, start_agent, text_of
from tests.support.waiting import wait_until_pilot

PLAN = ROOT / "examples" / "http-get.jmx"
NAME_RULE = "letters, digits, space, '.', '_' and '-', starting with a letter or digit"


def shown(widget: Widget) -> str:
    """The text the widget puts on screen, its lines joined by spaces (what a user can read)."""
    width, height = widget.outer_size
    lines = widget.render_lines(Region(0, 0, width, height))
    return " ".join(" ".join("".join(seg.text for seg in line).split()) for line in lines).strip()


def words(text: str) -> str:
    return " ".join(text.split())


def compact(text: str) -> str:
    """Without any space: a long path folds anywhere, so what counts is that every character shows."""
    return "".join(text.split())


def fits(widget: Widget) -> bool:
    """The widget lies inside the 80x24 terminal."""
    region = widget.region
    return region.width > 0 and region.right <= SIZE[0] and region.bottom <= SIZE[1]


def launched(server: ServerProcess) -> list[str]:
    with server.client() as http:
        return [t["name"] for t in http.get("/tests").raise_for_status().json()]


def behind(proxy: FaultProxy, server: ServerProcess) -> OctoApp:
    """A dashboard that reaches ``server`` through ``proxy``, giving up on an answer after 2 s."""
    settings = DashboardSettings(server=proxy.url, token=server.admin_token, refresh=0.5)
    return create_app(settings, Client(proxy.url, settings.token, timeout=2))


async def previewed(app: OctoApp, pilot: object, values: dict[str, str]) -> LaunchScreen:
    """The launch dialog filled with ``values`` and its placement previewed."""
    dialog = await open_launch(app, pilot)
    for field, value in values.items():
        dialog.query_one(f"#{field}", Input).value = value
    await pilot.press("ctrl+r")  # type: ignore[attr-defined]
    await wait_until_pilot(pilot, lambda: "ctrl+l launches it" in text_of(app, "#preview"), what="the placement")  # type: ignore[arg-type]
    return dialog


async def open_launch(app: OctoApp, pilot: object) -> LaunchScreen:
    await wait_until_pilot(pilot, lambda: bool(app.providers), what="providers")  # type: ignore[arg-type]
    await pilot.press("l")  # type: ignore[attr-defined]
    dialog = app.screen
    assert isinstance(dialog, LaunchScreen)
    return dialog


async def test_prompt_error_wraps_at_80x24(server: ServerProcess) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.connection.state == "ok", what="first poll")
        await pilot.press("p", "n")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"bad/name")
        await pilot.pause()
        error = app.screen.query_one("#prompt-error")
        assert shown(error) == f"✗ {NAME_RULE}"
        assert error.region.height >= 2 and fits(error)
        await pilot.press("escape")
    with server.client() as http:
        assert http.get("/providers").json() == []


async def test_plan_note_wraps_and_says_sizes_in_human_units(server: ServerProcess, tmp_path: Path) -> None:
    make_provider(server)
    big = tmp_path / "trial-big.jmx"
    with big.open("wb") as f:
        f.truncate(30003951)  # sparse: the size is all that is looked at
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_launch(app, pilot)
        dialog.query_one("#plan", Input).value = str(big)
        await pilot.pause()
        note = dialog.query_one("#plan-status")
        assert compact(shown(note)) == compact(f"✗ {big} is 28.6 MiB; the server accepts at most 4 MiB")
        assert note.region.height >= 2 and fits(note)
        await pilot.press("enter")
        assert "28.6 MiB" in text_of(app, "#preview")
    assert launched(server) == []


def test_human_sizes() -> None:
    assert [human_size(n) for n in (1, 1023, 1372, 4 * 2**20, 30003951, 2**20 - 1)] == [
        "1 byte",
        "1023 bytes",
        "1.3 KiB",
        "4 MiB",
        "28.6 MiB",
        "1 MiB",
    ]


async def test_a_file_that_is_not_a_plan_gets_no_tick(server: ServerProcess, tmp_path: Path) -> None:
    make_provider(server)
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    foo = tmp_path / "foo.jmx"
    foo.write_text("<foo/>")
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_launch(app, pilot)
        note = dialog.query_one("#plan-status")
        for path, reason in ((passwd, "not well-formed"), (foo, "the root element is <foo>")):
            dialog.query_one("#plan", Input).value = str(path)
            await pilot.pause()
            assert "✓" not in shown(note) and "✗" not in shown(note)
            assert shown(note) == f"{path.name} ({path.stat().st_size} bytes): enter checks the plan"
            await pilot.press("enter")
            await wait_until_pilot(pilot, lambda: "✗" in text_of(app, "#preview"), what="the server's verdict")
            preview = text_of(app, "#preview")
            assert "invalid plan" in preview and reason in preview
            # the note under the path says the same as the bottom line, in full
            assert shown(note) == words(preview) and note.has_class("-bad") and fits(note)
    assert launched(server) == []


async def test_name_and_location_are_explained_in_words(server: ServerProcess, tmp_path: Path) -> None:
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_launch(app, pilot)
        dialog.query_one("#plan", Input).value = str(PLAN)
        dialog.query_one("#name", Input).value = "bad/name"
        await pilot.press("ctrl+r")
        preview = text_of(app, "#preview")
        assert preview == f"Name: {NAME_RULE}" and "pattern" not in preview
        assert fits(dialog.query_one("#preview"))
        # a name taken from the plan's file name says so
        odd = tmp_path / "(copy).jmx"
        odd.write_text(PLAN.read_text())
        dialog.query_one("#plan", Input).value = str(odd)
        dialog.query_one("#name", Input).value = ""
        await pilot.press("ctrl+r")
        assert text_of(app, "#preview") == f"Name (the plan's file name '(copy)'): {NAME_RULE}"
        dialog.query_one("#name", Input).value = "ok"
        dialog.query_one("#locations", Input).value = "paris, us/east"
        await pilot.press("ctrl+r")
        preview = text_of(app, "#preview")
        assert preview.startswith("Locations: 'us/east': letters, digits") and "pattern" not in preview
    assert launched(server) == []


@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        ("users", "2.5", "Users/container: a whole number, got '2.5'"),
        ("containers", "1.5", "Containers: a whole number, got '1.5'"),
        ("duration", "1e3", "Duration: a whole number, got '1e3'"),
        ("rampup", "0.5", "Ramp-up: a whole number, got '0.5'"),
        ("containers", "-2", "Containers: at least 1"),
        ("users", "ten", "Users/container: a whole number, got 'ten'"),
    ],
)
async def test_counts_are_refused_never_changed(server: ServerProcess, field: str, typed: str, message: str) -> None:
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await open_launch(app, pilot)
        dialog.query_one("#plan", Input).value = str(PLAN)
        count = dialog.query_one(f"#{field}", Input)
        count.focus()
        count.value = ""
        await pilot.press(*typed)
        assert count.value == typed, "the number typed is kept as typed"
        assert count.has_class("-invalid")
        assert text_of(app, "#preview") == f"✗ {message}"  # said as it is typed
        await pilot.press("enter")
        assert text_of(app, "#preview") == message and dialog.query_one("#do-launch").disabled
        count.value = "2"
        await pilot.pause()
        assert not count.has_class("-invalid") and text_of(app, "#preview") == "enter: preview the placement"
    assert launched(server) == []


@pytest.mark.docker
async def test_ramp_up_warning_tick_and_a_launch_without_answer(  # type: ignore[no-untyped-def]
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, docker_client
) -> None:
    docker_lab(server, agents, tmp_path)
    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        app = behind(proxy, server)
        async with app.run_test(size=SIZE) as pilot:
            values = {"plan": str(PLAN), "name": "twice", "users": "1", "duration": "60", "rampup": "120"}
            dialog = await previewed(app, pilot, values)
            assert "⚠ Ramp-up (120 s) is longer than Duration (60 s): not every user starts" in text_of(app, "#preview")

            # Below the fields at 80x24, the form (no tab stop) scrolls to show the answer in full.
            def on_screen() -> str:
                return "\n".join("".join(s.text for s in strip) for strip in app.screen._compositor.render_strips())

            await wait_until_pilot(pilot, lambda: "ctrl+l launches it" in on_screen(), timeout=5, what="the answer")
            assert "⚠ Ramp-up (120 s) is longer" in on_screen()
            note = dialog.query_one("#plan-status")
            assert shown(note).startswith("✓ http-get.jmx (") and note.has_class("-ok")

            # the request goes out but no answer comes back: the test may exist
            proxy.blackhole = True
            await pilot.press("ctrl+l")
            preview = dialog.query_one("#preview")
            await wait_until_pilot(
                pilot, lambda: "may have started" in str(preview.render()), what="the unknown outcome"
            )
            assert app.screen is dialog and dialog.query_one("#do-launch").disabled
            assert "look at the tests table" in shown(preview) and fits(preview)
            notices = [n for n in app._notifications if n.title == "Launch: no answer"]
            assert notices and "may have started" in notices[0].message
            assert not any(n.title == "Launch refused" for n in app._notifications)
            await pilot.press("ctrl+l")
            assert "preview first" in str(preview.render())

            # no connection at all: nothing was sent, and it is not called a refusal
            proxy.blackhole = False
            await pilot.press("ctrl+r")
            await wait_until_pilot(
                pilot, lambda: "ctrl+l launches it" in str(preview.render()), what="the placement again"
            )
            await wait_until_pilot(pilot, lambda: app.connection.state == "ok", what="the polls answered again")
            proxy.down()
            # once the polls found no server, no kept-alive connection is left to send on
            await wait_until_pilot(pilot, lambda: app.connection.state == "unreachable", what="the polls failing")
            await pilot.press("ctrl+l")
            await wait_until_pilot(pilot, lambda: "nothing was sent" in str(preview.render()), what="no connection")
            assert any(n.title == "Server unreachable" for n in app._notifications)
            assert not any(n.title == "Launch refused" for n in app._notifications)
    assert launched(server) == []


@pytest.mark.docker
async def test_a_launch_sent_again_after_a_lost_answer_starts_one_test(  # type: ignore[no-untyped-def]
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, docker_client
) -> None:
    docker_lab(server, agents, tmp_path)
    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        app = behind(proxy, server)
        async with app.run_test(size=SIZE) as pilot:
            values = {"plan": str(PLAN), "name": "once", "users": "1", "duration": "5", "image": "octotui-absent:never"}
            dialog = await previewed(app, pilot, values)
            preview = dialog.query_one("#preview")
            # the launch reaches the server only after the dashboard gave up waiting (2 s)
            proxy.delay_s = 2.5
            await pilot.press("ctrl+l")
            await wait_until_pilot(pilot, lambda: "may have started" in shown(preview), what="the unknown outcome")
            proxy.delay_s = 0.0
            await wait_until_pilot(
                pilot, lambda: launched(server) == ["once"], what="the first launch made on the server"
            )
            await pilot.press("ctrl+r")
            await wait_until_pilot(pilot, lambda: "ctrl+l launches it" in shown(preview), what="the placement again")
            await pilot.press("ctrl+l")
            await wait_until_pilot(pilot, lambda: app.screen is not dialog, what="the launch answered")
    assert launched(server) == ["once"], "sent again with its key: the server answered with the first test"


async def test_install_dialog_in_embedded_mode(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    provider = make_provider(server)
    start_agent(server, agents, tmp_path, provider["token"])
    settings = DashboardSettings(server=server.url, token=server.admin_token, refresh=0.5)
    app = create_app(settings, Client(server.url, settings.token, timeout=3), embedded=True)
    app.actions.provider_tokens[provider["id"]] = provider["token"]  # as the embedded mode knows it
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: any(p.agents == 1 for p in app.providers), what="the agent registered")
        await pilot.press("p", "i")
        dialog = app.screen
        assert isinstance(dialog, ProviderScreen)
        await pilot.pause()
        assert shown(dialog.query_one("#install-summary")).startswith("1 agent · locations: paris")
        note = dialog.query_one("#embedded-note")
        assert "for this machine" in shown(note) and "run `octotui server`" in shown(note) and fits(note)
        token_note = shown(dialog.query_one("#token-note"))
        assert "keeps only a hash" in token_note and "dashboard only" not in token_note
        assert fits(dialog.query_one("#token-note")) and fits(dialog.query_one("#install-keys"))

    app = build_app(server)  # not embedded: no such line
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: bool(app.providers))
        await pilot.press("p", "i")
        assert isinstance(app.screen, ProviderScreen)
        assert not app.screen.query("#embedded-note")


async def test_help_reads_in_two_columns_at_80x24(server: ServerProcess) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause()
        help_text = app.screen.query_one("#help-text")
        width, height = help_text.outer_size
        lines = ["".join(s.text for s in line).rstrip() for line in help_text.render_lines(Region(0, 0, width, height))]
        wanted = [Text.from_markup(line).plain for line in HELP.splitlines()]
        assert lines == wanted, "one screen line per help line: nothing wrapped, nothing cut"
        assert fits(help_text)


def test_one_more_agent_is_singular() -> None:
    items = [PlacementItem(agent=str(i), agent_name=f"box{i}", location="paris", containers=1) for i in range(5)]
    text = placement_text(Placement(provider="p", provider_name="lab", containers=5, items=items), users=1)
    assert "1 container \N{MULTIPLICATION SIGN} 1 user = 5 users" not in text
    assert "5 containers \N{MULTIPLICATION SIGN} 1 user = 5 users" in text and "… 1 more agent: 1 container" in text
