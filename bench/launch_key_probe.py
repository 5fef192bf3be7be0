"""The real dashboard, headless, launching a test with its own dialog and keys (Pilot).

``python -m bench.launch_key_probe URL TOKEN PLAN_PATH IMAGE PORT``: opens the launch dialog (l),
fills it, previews (enter), then presses ctrl+l; prints one JSON line with the wall time of that
key press, the test's name, and when the dashboard itself first showed the container running.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from textual.widgets import Button, Input

from octotui.client import Client
from octotui.tui.app import DashboardSettings, create_app


async def launch(url: str, token: str, plan: str, image: str, port: str) -> dict[str, object]:
    name = f"key-{int(time.time() * 1000) % 10**8}"
    app = create_app(DashboardSettings(server=url, token=token, refresh=1.0), Client(url, token))
    async with app.run_test(size=(200, 50)) as pilot:
        deadline = time.monotonic() + 30
        while not any(a.status == "online" for a in app.agents) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        await pilot.press("l")
        await pilot.pause(0.3)
        screen = app.screen
        fields = {"plan": plan, "name": name, "containers": "1", "users": "1", "duration": "120", "image": image,
                  "properties": f"host=127.0.0.1 port={port} path=/ think_ms=200"}  # fmt: skip
        for field, value in fields.items():
            screen.query_one(f"#{field}", Input).value = value
        await pilot.pause(0.2)
        screen.query_one("#plan", Input).focus()
        await pilot.press("enter")
        button = screen.query_one("#do-launch", Button)
        while button.disabled and time.monotonic() < deadline:
            await pilot.pause(0.05)
        pressed = time.time()
        await pilot.press("ctrl+l")
        shown = None
        end = time.monotonic() + 15
        while time.monotonic() < end:
            test = next((t for t in app.tests if t.name == name), None)
            if test is not None and any(c.state == "running" for c in test.containers):
                shown = time.time()
                break
            await pilot.pause(0.05)
    return {"pressed": pressed, "name": name, "shown": shown}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(launch(*sys.argv[1:6]))))
