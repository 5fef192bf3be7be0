"""The real dashboard app, headless, against a server: ``python -m bench.dashboard_probe URL TOKEN``.

Prints one JSON line: CPU seconds of this process over the window (``time.process_time``), wall
seconds, poll rounds completed, and the agents and containers the app held at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from octotui.client import Client
from octotui.tui.app import DashboardSettings, create_app


async def measure(
    url: str, token: str, seconds: float, warmup: float, size: tuple[int, int], profile: str
) -> dict[str, float]:
    settings = DashboardSettings(server=url, token=token, refresh=1.0)
    app = create_app(settings, Client(url, token, timeout=30))
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + 120
        while not app.agents and time.monotonic() < deadline:
            await pilot.pause(0.2)
        await pilot.pause(warmup)
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
    return {
        "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "rounds": rounds1 - rounds0,
        "agents": agents, "containers": containers,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--size", default="200x50")
    parser.add_argument("--profile", default=os.environ.get("BENCH_PROFILE_OUT", ""))
    args = parser.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    print(json.dumps(asyncio.run(measure(args.url, args.token, args.seconds, args.warmup, (w, h), args.profile))))


if __name__ == "__main__":
    main()
