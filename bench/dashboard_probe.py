"""The real dashboard app, headless, against a server: ``python -m bench.dashboard_probe URL TOKEN``.

Prints one JSON line: CPU seconds of this process over the window (``time.process_time``), wall
seconds, poll rounds completed, and the agents and containers the app held at the end. With
``--test-id ID --labels N``, the app shows that test's screen on its labels pane instead of the
main screen (measured once the pane holds N rows), and the line also says how many label updates
arrived in the window and the labels' samples at its start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from octotui.client import Client
from octotui.tui.app import DashboardSettings, OctoApp, create_app
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.tables import LabelsTable


def _samples(app: OctoApp) -> int:
    figures = app.test_labels
    return sum(f.samples for f in (figures.labels or ())) if figures is not None else 0


async def measure(
    url: str, token: str, seconds: float, warmup: float, size: tuple[int, int], profile: str,
    test_id: str = "", labels: int = 0,
) -> dict[str, float]:  # fmt: skip
    settings = DashboardSettings(server=url, token=token, refresh=1.0)
    app = create_app(settings, Client(url, token, timeout=30))
    updates = 0

    def counted(_: object) -> None:
        nonlocal updates
        updates += 1

    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + 120
        while not app.agents and time.monotonic() < deadline:
            await pilot.pause(0.2)
        rows = 0
        if test_id:
            screen = TestScreen(test_id)
            await app.push_screen(screen)
            screen.action_pane("test-labels")
            table = screen.query_one(LabelsTable)
            while table.row_count < labels and time.monotonic() < deadline:
                await pilot.pause(0.2)
            if table.row_count < labels:
                raise AssertionError(f"the labels pane shows {table.row_count} rows, not {labels}")
            app.watch(app, "test_labels", counted, init=False)
        await pilot.pause(warmup)
        updates, samples0 = 0, _samples(app)
        rounds0, cpu0, wall0 = app.poller.rounds, time.process_time(), time.monotonic()
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="disabled")
            profiler.start()
        await asyncio.sleep(seconds)
        cpu1, wall1, rounds1 = time.process_time(), time.monotonic(), app.poller.rounds
        if profiler is not None:
            profiler.stop()
            text = profiler.output_text(unicode=False, color=False, show_all=False)
            Path(profile).parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(Path(profile).write_text, text)
        containers = sum(len(t.containers) for t in app.tests)
        agents = len(app.agents)
        samples1 = _samples(app)
        if test_id:
            rows = screen.query_one(LabelsTable).row_count
    return {
        "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "rounds": rounds1 - rounds0,
        "agents": agents, "containers": containers, "rows": rows, "label_updates": updates,
        "samples_start": samples0, "samples_end": samples1,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--size", default="200x50")
    parser.add_argument("--profile", default=os.environ.get("BENCH_PROFILE_OUT", ""))
    parser.add_argument("--test-id", default="", help="show this test's labels pane instead of the main screen")
    parser.add_argument("--labels", type=int, default=0, help="rows the labels pane must show before measuring")
    args = parser.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    got = measure(args.url, args.token, args.seconds, args.warmup, (w, h), args.profile, args.test_id, args.labels)
    print(json.dumps(asyncio.run(got)))


if __name__ == "__main__":
    main()
