"""Figure: a sample → its label's figure on screen (issue 12, Performance): from the HTTP target's
first request of a label that starts late in the test to that label's row in the dashboard's
labels pane."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

import httpx

from bench import dockerutil
from bench.common import (
    JMETER_IMAGE,
    Metric,
    Result,
    percentile,
    running_agent,
    scratch,
    server_with_provider,
    wait_online,
    wait_until,
)  # fmt: skip
from octotui.client import Client
from octotui.tui.app import DashboardSettings, create_app
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.tables import LabelsTable
from tests.support.httptarget import HttpTarget, _CountingServer

TITLE = "A sample → its label's figure on screen"
TARGET = "< 3 s"

_GROUP = """      <ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="{name}" enabled="true">
        <stringProp name="ThreadGroup.on_sample_error">continue</stringProp>
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController"
            guiclass="LoopControlPanel" testclass="LoopController" testname="Loop Controller" enabled="true">
          <boolProp name="LoopController.continue_forever">false</boolProp>
          <intProp name="LoopController.loops">-1</intProp>
        </elementProp>
        <stringProp name="ThreadGroup.num_threads">1</stringProp>
        <stringProp name="ThreadGroup.ramp_time">0</stringProp>
        <longProp name="ThreadGroup.start_time">1</longProp>
        <longProp name="ThreadGroup.end_time">1</longProp>
        <boolProp name="ThreadGroup.scheduler">true</boolProp>
        <stringProp name="ThreadGroup.duration">${{__P(duration,60)}}</stringProp>
        <stringProp name="ThreadGroup.delay">{delay}</stringProp>
      </ThreadGroup>
      <hashTree>
        <HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="{label}" enabled="true">
          <elementProp name="HTTPsampler.Arguments" elementType="Arguments" guiclass="HTTPArgumentsPanel"
              testclass="Arguments" testname="User Defined Variables" enabled="true">
            <collectionProp name="Arguments.arguments"/>
          </elementProp>
          <stringProp name="HTTPSampler.domain">${{__P(host,127.0.0.1)}}</stringProp>
          <stringProp name="HTTPSampler.port">${{__P(port,8080)}}</stringProp>
          <stringProp name="HTTPSampler.protocol">http</stringProp>
          <stringProp name="HTTPSampler.path">{path}</stringProp>
          <stringProp name="HTTPSampler.method">GET</stringProp>
          <boolProp name="HTTPSampler.use_keepalive">true</boolProp>
          <stringProp name="HTTPSampler.connect_timeout">5000</stringProp>
          <stringProp name="HTTPSampler.response_timeout">10000</stringProp>
        </HTTPSamplerProxy>
        <hashTree>
          <ConstantTimer guiclass="ConstantTimerGui" testclass="ConstantTimer" testname="Think time" enabled="true">
            <stringProp name="ConstantTimer.delay">{think}</stringProp>
          </ConstantTimer>
          <hashTree/>
        </hashTree>
      </hashTree>
"""


def plan(delays: list[int]) -> str:
    """A JMX: a steady label from the start, and one label ``late N`` (path /late/N) per delay, whose
    one thread starts ``delays[N]`` seconds into the test. Its timer (before each request, the first
    included) waits 0.5 s + 0.23 s x N, so that the first requests fall at different fractions of a
    second: the agent's 1 s JTL reads and the dashboard's 1 s polls meet them at different phases."""
    groups = [_GROUP.format(name="steady", delay=0, label="steady", path="/steady", think=200)]
    groups += [
        _GROUP.format(name=f"late {i}", delay=d, label=f"late {i}", path=f"/late/{i}", think=500 + 230 * i)
        for i, d in enumerate(delays)
    ]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<jmeterTestPlan version="1.2" properties="2.8" jmeter="2.13">
  <hashTree>
    <TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="octotui label latency" enabled="true">
      <boolProp name="TestPlan.functional_mode">false</boolProp>
      <boolProp name="TestPlan.serialize_threadgroups">false</boolProp>
      <elementProp name="TestPlan.user_defined_variables" elementType="Arguments" guiclass="ArgumentsPanel"
          testclass="Arguments" testname="User Defined Variables" enabled="true">
        <collectionProp name="Arguments.arguments"/>
      </elementProp>
    </TestPlan>
    <hashTree>
{"".join(groups)}    </hashTree>
  </hashTree>
</jmeterTestPlan>
"""


class _StampingServer(_CountingServer):
    """The tests' HTTP target, also keeping the wall time of the first request of each path."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[str, float] = {}

    def count(self, path: str) -> None:
        now = time.time()
        super().count(path)
        with self._lock:
            self.first.setdefault(path, now)


class StampingTarget(HttpTarget):
    def start(self) -> StampingTarget:
        if self._server is not None:
            raise RuntimeError("StampingTarget already started once; make a new one")
        self._server = _StampingServer()
        self._running = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-target", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> StampingTarget:
        return self.start()

    def first(self, path: str) -> float | None:
        server = self._require()
        assert isinstance(server, _StampingServer)
        with server._lock:
            return server.first.get(path)


def _watch_server(
    url: str, token: str, test_id: str, wanted: set[str], seen: dict[str, float], stop: threading.Event
) -> None:
    """When ``GET /tests/ID/labels`` first lists each wanted label (polled every 100 ms)."""
    with httpx.Client(base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        while not stop.is_set() and not wanted <= seen.keys():
            answer = http.get(f"/tests/{test_id}/labels")
            if answer.status_code == 200:
                now = time.time()
                for f in answer.json():
                    if f["label"] in wanted:
                        seen.setdefault(f["label"], now)
            stop.wait(0.1)


async def _dashboard(url: str, token: str, test_id: str, wanted: list[str], limit_s: float) -> dict[str, float]:
    """The real app on the test's labels pane: when each wanted label's row first appears (wall time)."""
    app = create_app(DashboardSettings(server=url, token=token, refresh=1.0), Client(url, token, timeout=30))
    shown: dict[str, float] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        screen = TestScreen(test_id)
        await app.push_screen(screen)
        screen.action_pane("test-labels")
        table = screen.query_one(LabelsTable)
        deadline = time.monotonic() + limit_s
        while len(shown) < len(wanted) and time.monotonic() < deadline:
            for label in wanted:
                if label not in shown and table.row_cells(label) is not None:
                    shown[label] = time.time()
            await pilot.pause(0.02)
    return shown


def _once(delays: list[int], interval: float) -> tuple[list[float], list[float], list[str]]:
    """One test; per late label: (target → screen s, target → server s), and lines for the details."""
    dc = dockerutil.client()
    test_ids: list[str] = []
    wanted = [f"late {i}" for i in range(len(delays))]
    try:
        with (
            scratch("latency") as tmp,
            StampingTarget() as target,
            server_with_provider(tmp, "--heartbeat-interval", str(interval)) as (server, api, provider),
            running_agent(server, provider["token"], tmp, "latency-agent"),
        ):
            wait_online(api, "latency-agent", docker=True)
            duration = max(delays) + 30
            spec = {
                "name": "label-latency", "plan": plan(delays), "provider": provider["id"], "containers": 1,
                "image": JMETER_IMAGE, "users": 1, "duration": duration,
                "properties": {"host": "127.0.0.1", "port": str(target.port), "duration": str(duration)},
            }  # fmt: skip
            response = api.post("/tests", json=spec)
            response.raise_for_status()
            test_id = response.json()["id"]
            test_ids.append(test_id)
            seen: dict[str, float] = {}
            stop = threading.Event()
            watcher = threading.Thread(
                target=_watch_server, args=(server.url, server.admin_token, test_id, set(wanted), seen, stop),
                daemon=True,
            )  # fmt: skip
            watcher.start()
            try:
                shown = asyncio.run(_dashboard(server.url, server.admin_token, test_id, wanted, max(delays) + 90))
            finally:
                stop.set()
                watcher.join(timeout=15)
            firsts = {label: target.first(f"/late/{i}") for i, label in enumerate(wanted)}
            api.post(f"/tests/{test_id}/stop")
            wait_until(lambda: not dockerutil.of_test(dc, test_id), timeout=120, interval=1, what="containers removed")
    finally:
        dockerutil.remove_tests(dc, test_ids)
        dc.close()
    screen_s, server_s, lines = [], [], []
    for label in wanted:
        first, on_screen, on_server = firsts[label], shown.get(label), seen.get(label)
        if first is None or on_screen is None:
            raise AssertionError(f"{label}: first request {first}, on screen {on_screen}")
        screen_s.append(on_screen - first)
        if on_server is not None:
            server_s.append(on_server - first)
        lines.append(
            f"{label}: on the server after {(on_server or float('nan')) - first:.2f} s, on screen after "
            f"{on_screen - first:.2f} s"
        )
    return screen_s, server_s, lines


def summarize_s(values: list[float]) -> str:
    return (
        f"n={len(values)} median {statistics.median(values):.2f} s, p90 {percentile(values, 90):.2f} s, "
        f"max {max(values):.2f} s"
        if values
        else "no samples"
    )


def run(runs: int, quick: bool) -> Result:
    # Whole seconds apart by 7, 6, 6, 7: at 5 s heartbeats the first requests fall at every phase.
    delays = [6, 13, 19] if quick else [6, 13, 19, 25, 32]
    metrics: list[Metric] = []
    details: list[str] = []
    for interval, target in ((5.0, 3.0), (1.0, None)):
        medians, worst, server_medians, pooled, pooled_server = [], [], [], [], []
        for i in range(runs):
            screen_s, server_s, lines = _once(delays, interval)
            pooled += screen_s
            pooled_server += server_s
            medians.append(statistics.median(screen_s))
            worst.append(max(screen_s))
            server_medians.append(statistics.median(server_s) if server_s else float("nan"))
            details.append(f"heartbeats every {interval:.0f} s, run {i + 1}: " + "; ".join(lines))
        details.append(
            f"heartbeats every {interval:.0f} s, every late label of every run: target → screen "
            f"{summarize_s(pooled)}; target → server {summarize_s(pooled_server)}"
        )
        which = "server default" if interval == 5.0 else "--heartbeat-interval 1"
        metrics += [
            Metric(f"target → screen, median ({interval:.0f} s heartbeats, {which})", "s", medians, target),
            Metric(f"target → screen, slowest ({interval:.0f} s heartbeats)", "s", worst),
            Metric(f"target → server's labels, median ({interval:.0f} s heartbeats)", "s", server_medians),
        ]
    return Result(
        figure="label_latency", title=TITLE, target=TARGET, method=METHOD + f" Late labels per test: {len(delays)}.",
        metrics=metrics, details=details,
    )  # fmt: skip


METHOD = f"""real parts throughout: a real `octotui server` process, a real `octotui-agent` process
with the Docker engine, one container of `{JMETER_IMAGE}` running a plan with a steady label from
the start and labels `late 0..N` each in its own thread group with a startup delay (6, 13, 19, 25,
32 s into the test, 3 with --quick: every phase of a 5 s heartbeat) and a timer of 0.5 s + 0.23 s x N
before each request (every phase of a second), 1 thread each, requests to `/late/N`, against an HTTP target on
127.0.0.1 that stamps (wall clock) the first request of each path. The real dashboard
(`octotui.tui.app.create_app`, `run_test`, 1 s refresh) runs in the suite's process on the test's
screen, labels pane shown, and checks every 20 ms whether each late label has a row in the
`LabelsTable`. Measured per late label: the target's first request of it → its row on screen
(median over the labels of a test: one run); beside it, the first time `GET /tests/ID/labels`
lists it (polled every 100 ms). The path in between: JMeter writes the row (autoflush), the agent
reads the JTL every 1 s, the next heartbeat carries the label (every heartbeat interval), the server
merges it, the dashboard's next poll (every 1 s) fetches and shows it. Run with the server's default
5 s heartbeats (the target applies there) and, to show where the time goes, with 1 s heartbeats."""
