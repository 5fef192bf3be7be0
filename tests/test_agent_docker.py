"""The agent's Docker runtime on the real engine.

A tiny locally made image (a static busybox from Debian, its ``/usr/bin/jmeter`` a shell script
that prints JMeter's lines and writes a JTL) stands in for JMeter where only the runtime is under
test: labels, limits, mounts, log following, failure, stop, clean-up, adoption after a restart.
The real JMeter image then runs a real plan against a local HTTP server and stops gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.containers import DockerRuntime
from agent.launches import LABEL_SHUTDOWN_PORT
from agent.records import LaunchError
from octotui.protocol import (
    LABEL_AGENT,
    LABEL_COMMAND,
    LABEL_CONTAINER,
    LABEL_MANAGED,
    LABEL_TEST,
    Command,
    LaunchSpec,
)
from tests.support.images import PLAN
from tests.support.processes import ROOT
from tests.support.waiting import wait_until_async


def _cleanup(docker_client: Any, agent_id: str) -> None:
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"}):
        with contextlib.suppress(Exception):
            container.remove(force=True)


@pytest.fixture
def agent_id(docker_client: Any) -> Iterator[str]:
    """A unique agent id whose containers are all removed at the end."""
    value = f"a-test-{uuid.uuid4().hex[:10]}"
    yield value
    _cleanup(docker_client, value)


@pytest.fixture
async def runtime(tmp_path: Path, agent_id: str) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(tmp_path / "work", agent_id, state_file=tmp_path / "containers.json")
    info, changed = await rt.check_engine()
    assert info.available and info.version and changed
    yield rt
    await rt.aclose()


def _launch(image: str, *, cid: str | None = None, command_id: str | None = None, **spec: Any) -> Command:
    cid = cid or f"c-{uuid.uuid4().hex[:8]}"
    launch = LaunchSpec(test_id="t-test", container_id=cid, image=image, plan=PLAN, **spec)
    return Command(id=command_id or f"cmd-{uuid.uuid4().hex[:8]}", kind="launch", container_id=cid, test_id="t-test",
                   launch=launch)  # fmt: skip


async def _state(runtime: DockerRuntime, cid: str, *states: str) -> Any:
    report = next((r for r in await runtime.reports() if r.container_id == cid), None)
    return report if report is not None and report.state in states else None


async def _reported(
    runtime: DockerRuntime, cid: str, *states: str, within: float, what: str,
    test: Callable[[Any], Any] = bool, interval: float = 0.1,
) -> Any:  # fmt: skip
    """The report of ``cid`` once it is in one of ``states`` and passes ``test``; bounded, fails with ``what``."""

    async def ready() -> Any:
        report = await _state(runtime, cid, *states)
        return report if report is not None and test(report) else None

    return await wait_until_async(ready, timeout=within, interval=interval, what=what)


pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("agent-docker")]


async def test_launch_labels_limits_mounts_follow_and_cleanup(
    runtime: DockerRuntime, docker_client: Any, fake_jmeter_image: str, agent_id: str
) -> None:
    command = _launch(fake_jmeter_image, cpu_limit=0.5, memory_limit=64 * 1024 * 1024,
                      properties={"fake.duration": "4"})  # fmt: skip
    cid = command.container_id
    tracked = await runtime.launch(command)
    assert tracked.state == "running" and tracked.docker_id
    attrs = docker_client.api.inspect_container(tracked.docker_id)
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == "true" and labels[LABEL_TEST] == "t-test"
    assert (labels[LABEL_CONTAINER], labels[LABEL_AGENT], labels[LABEL_COMMAND]) == (cid, agent_id, command.id)
    port = int(labels[LABEL_SHUTDOWN_PORT])
    assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    assert f"-Jjmeterengine.nongui.port={port}" in attrs["Args"] and "-Jfake.duration=4" in attrs["Args"]
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/plan"]["RW"] is False and mounts["/results"]["RW"] is True
    plan_dir = runtime.work_dir / cid / "plan"
    assert (plan_dir / "plan.jmx").read_text() == PLAN

    live = await _reported(runtime, cid, "running", test=lambda r: r.figures and r.figures.samples, within=15,
                        what="live figures")  # fmt: skip
    assert live.figures.rate == 5.0 and live.figures.active == 1
    assert live.memory_bytes > 0 and live.memory_limit == 64 * 1024 * 1024
    assert runtime.tracked(cid).cgroup is not None, "CPU/memory come from the cgroup files here"  # type: ignore[union-attr]
    assert runtime.tracked(cid).shutdown_port == port  # type: ignore[union-attr]

    done = await _reported(runtime, cid, "finished", "failed", within=30, what="the end of the run")
    assert done.state == "finished", done.error
    assert done.exit_code == 0 and done.error is None
    assert done.final is not None and done.final.samples == 20 and done.final.max_ms == 50
    assert done.final.p90_ms == 50 and done.final.avg_ms == 30
    assert done.figures.samples == 20
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_CONTAINER}={cid}"})
    assert not plan_dir.exists(), "the plan folder is removed"
    assert (runtime.work_dir / cid / "results" / "results.jtl").is_file(), "the results are kept"
    # the terminal report survives an agent restart until it was delivered a few times
    again = DockerRuntime(runtime.work_dir, agent_id, state_file=runtime.state_file)
    assert [r.state for r in await again.reports() if r.container_id == cid] == ["finished"]
    for _ in range(3):
        runtime.delivered([cid])
    assert runtime.tracked(cid) is None
    assert DockerRuntime(runtime.work_dir, agent_id, state_file=runtime.state_file).tracked(cid) is None


async def test_failing_jmeter_reports_its_own_error_lines(runtime: DockerRuntime, fake_jmeter_image: str) -> None:
    command = _launch(fake_jmeter_image, properties={"fake.duration": "1", "fake.exit": "3"})
    await runtime.launch(command)
    done = await _reported(runtime, command.container_id, "finished", "failed", within=30, what="end")
    assert done.state == "failed" and done.exit_code == 3
    assert "ERROR - jmeter.JMeter: fake failure with code 3" in done.error
    assert done.final is not None and done.final.samples == 5


async def test_stop_falls_back_to_docker_stop(
    runtime: DockerRuntime, docker_client: Any, fake_jmeter_image: str
) -> None:
    command = _launch(fake_jmeter_image)
    cid = command.container_id
    await runtime.launch(command)
    await _reported(runtime, cid, "running", test=lambda r: r.figures, within=15, what="running")
    started = time.monotonic()
    assert await runtime.stop(cid, grace_s=1.0) == "StopTestNow sent"
    assert await _state(runtime, cid, "stopping")
    done = await _reported(runtime, cid, "finished", "failed", within=30, what="stopped")
    assert time.monotonic() - started < 15
    assert done.state == "finished" and done.exit_code == 143, "the stand-in ignores StopTestNow, docker stop ends it"
    assert "did not stop gracefully" in done.error
    assert done.final is not None and done.final.samples > 0
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_CONTAINER}={cid}"})
    assert await runtime.stop(cid, 1.0) == "already finished"
    assert await runtime.stop("c-unknown", 1.0) == "not running on this agent"


async def test_redelivered_launch_never_starts_a_second_container(
    tmp_path: Path, runtime: DockerRuntime, docker_client: Any, fake_jmeter_image: str, agent_id: str
) -> None:
    command = _launch(fake_jmeter_image)
    first = await runtime.launch(command)
    assert await runtime.launch(command) is first
    # the agent restarted and lost its memory: the labels still say the container exists
    fresh = DockerRuntime(runtime.work_dir, agent_id, state_file=tmp_path / "other.json")
    await fresh.check_engine()
    try:
        again = await fresh.launch(command)
        assert again.docker_id == first.docker_id
        found = docker_client.containers.list(all=True, filters={"label": f"{LABEL_COMMAND}={command.id}"})
        assert len(found) == 1
    finally:
        await fresh.aclose()


async def test_restart_finds_running_and_exited_containers(
    tmp_path: Path, runtime: DockerRuntime, docker_client: Any, fake_jmeter_image: str, agent_id: str
) -> None:
    long_run = _launch(fake_jmeter_image)
    short_run = _launch(fake_jmeter_image, properties={"fake.duration": "4"})
    await runtime.launch(long_run)
    await runtime.launch(short_run)
    await _reported(runtime, long_run.container_id, "running", test=lambda r: r.figures, within=20,
                 what="a first summary")  # fmt: skip
    short_docker_id = runtime.tracked(short_run.container_id).docker_id  # type: ignore[union-attr]
    await runtime.aclose()
    # a new agent process: nothing in memory, the containers still there (the short one has exited)
    await asyncio.to_thread(docker_client.api.wait, short_docker_id, timeout=30)
    restarted = DockerRuntime(runtime.work_dir, agent_id, state_file=tmp_path / "restart.json")
    await restarted.check_engine()
    try:
        assert sorted(await restarted.adopt()) == sorted([long_run.container_id, short_run.container_id])
        report = await _reported(restarted, long_run.container_id, "running",
                              test=lambda r: r.figures and r.figures.samples >= 10, within=15,
                              what="figures replayed")  # fmt: skip
        assert report.test_id == "t-test" and report.command_id == long_run.id
        short = await _reported(restarted, short_run.container_id, "finished", within=15, what="short end")
        assert short.exit_code == 0 and short.final.samples == 20
        assert await restarted.adopt() == [], "adopting twice follows nothing twice"
        await restarted.stop(long_run.container_id, grace_s=0.5)
        await _reported(restarted, long_run.container_id, "finished", within=30, what="stop")
    finally:
        await restarted.aclose()


async def test_vanished_container_is_failed_with_the_reason(
    runtime: DockerRuntime, docker_client: Any, fake_jmeter_image: str
) -> None:
    command = _launch(fake_jmeter_image)
    tracked = await runtime.launch(command)
    await _reported(runtime, command.container_id, "running", within=10, what="running")
    await asyncio.to_thread(docker_client.api.remove_container, tracked.docker_id, force=True)
    done = await _reported(runtime, command.container_id, "failed", within=20, what="failed")
    assert "vanished" in done.error


async def test_missing_image_that_cannot_be_pulled(runtime: DockerRuntime, docker_client: Any, agent_id: str) -> None:
    command = _launch("octotui-no-such-image-anywhere:nope")
    with pytest.raises(LaunchError, match=r"pull of octotui-no-such-image-anywhere:nope failed: .+"):
        await runtime.launch(command)
    report = await _state(runtime, command.container_id, "failed")
    assert report is not None and report.error.startswith("pull of")
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"})
    assert not (runtime.work_dir / command.container_id / "plan").exists()


async def test_bad_launch_specs_are_refused_and_create_nothing(
    runtime: DockerRuntime, docker_client: Any, fake_jmeter_image: str, agent_id: str
) -> None:
    good = _launch(fake_jmeter_image)
    cases = [
        (good.model_copy(update={"launch": None}), "without a launch spec"),
        (_launch(fake_jmeter_image, cid="../../etc"), "invalid container id"),
        (good.model_copy(update={"container_id": "c-other"}), "invalid container id"),
        (_launch(fake_jmeter_image, plan_name="../escape.jmx"), "invalid plan name"),
        (_launch(fake_jmeter_image, plan_name="a/b.jmx"), "invalid plan name"),
    ]
    for command, message in cases:
        with pytest.raises(LaunchError, match=message):
            await runtime.launch(command)
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"})
    assert not any(runtime.work_dir.glob("*/plan")) if runtime.work_dir.exists() else True
    assert not (runtime.work_dir.parent / "escape.jmx").exists()


async def test_engine_errors_are_clear_and_change_nothing(tmp_path: Path, fake_jmeter_image: str,
                                                          agent_id: str) -> None:  # fmt: skip
    """No engine at DOCKER_HOST, or one the agent cannot speak to: the reason says so, nothing is launched."""
    for host, reason in ((f"unix://{tmp_path}/none.sock", "no Docker engine answers at unix://"),
                         ("ssh://user@example", "unix:// and tcp:// engines only")):  # fmt: skip
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DOCKER_HOST", host)
            rt = DockerRuntime(tmp_path / "work", agent_id)
            info, changed = await rt.check_engine()
        assert changed and not info.available and reason in (info.error or ""), info
        with pytest.raises(LaunchError, match="no Docker engine on this agent: .*" + reason.split()[0]):
            await rt.launch(_launch(fake_jmeter_image))
        assert not (tmp_path / "work").exists() or not any((tmp_path / "work").glob("*/plan"))
        await rt.aclose()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # JMeter's StopTestNow cuts connections mid-request


class _Target(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.jmeter
async def test_real_jmeter_runs_a_plan_and_stops_gracefully(
    runtime: DockerRuntime, docker_client: Any, jmeter_image: str
) -> None:
    httpd = _Server(("127.0.0.1", 0), _Target)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        plan = (ROOT / "examples" / "http-get.jmx").read_text()
        props = {"host": "127.0.0.1", "port": str(httpd.server_address[1]), "path": "/", "users": "2",
                 "rampup": "0", "duration": "120", "think_ms": "5"}  # fmt: skip
        command = _launch(jmeter_image, properties=props)
        command.launch.plan = plan  # type: ignore[union-attr]
        cid = command.container_id
        started = time.monotonic()
        await runtime.launch(command)
        live = await _reported(runtime, cid, "running", test=lambda r: r.figures and r.figures.samples, within=90,
                            interval=0.5, what="JMeter's first summary")  # fmt: skip
        await _reported(runtime, cid, "running", test=lambda r: r.figures.samples > live.figures.samples, within=30,
                     interval=0.5, what="a second summary")  # fmt: skip
        print(f"first figures after {time.monotonic() - started:.1f} s: {live.figures}")
        assert live.figures.rate > 0 and _Target.hits > 0
        assert runtime.tracked(cid).tracker.shutdown_port == runtime.tracked(cid).shutdown_port  # type: ignore[union-attr]
        assert await runtime.stop(cid, grace_s=30) == "StopTestNow sent"
        done = await _reported(runtime, cid, "finished", "failed", within=60, what="graceful stop")
        assert done.state == "finished" and done.exit_code == 0, (done.error, done.exit_code)
        assert done.error is None, "JMeter stopped by StopTestNow, not by docker stop"
        assert done.final is not None and done.final.samples > 0
        assert done.final.errors <= 2, "at most the requests in flight when StopTestNow came fail"
        assert done.final.p99_ms >= done.final.p90_ms >= done.final.min_ms
        print(f"final: {done.final}")
        assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_CONTAINER}={cid}"})
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_stop_while_jmeter_still_starts_is_still_graceful(
    runtime: DockerRuntime, docker_client: Any, jmeter_image: str
) -> None:
    """A stop that arrives before JMeter listens for it (its JVM still loading the plan) is repeated
    until JMeter hears it: the container ends with exit 0, not by ``docker stop``."""
    httpd = _Server(("127.0.0.1", 0), _Target)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        props = {"host": "127.0.0.1", "port": str(httpd.server_address[1]), "users": "1", "duration": "120",
                 "think_ms": "50"}  # fmt: skip
        command = _launch(jmeter_image, properties=props)
        command.launch.plan = (ROOT / "examples" / "http-get.jmx").read_text()  # type: ignore[union-attr]
        cid = command.container_id
        await runtime.launch(command)
        assert runtime.tracked(cid).tracker.shutdown_port is None, "JMeter is not listening yet"  # type: ignore[union-attr]
        assert await runtime.stop(cid, grace_s=60) == "StopTestNow sent"
        done = await _reported(runtime, cid, "finished", "failed", within=90, what="graceful stop")
        assert (done.state, done.exit_code, done.error) == ("finished", 0, None)
    finally:
        httpd.shutdown()
        httpd.server_close()


class _Holding(http.server.BaseHTTPRequestHandler):
    """Answers only once ``release`` is set (60 s at most): a sample stays in flight meanwhile."""

    arrived = threading.Event()
    release = threading.Event()

    def do_GET(self) -> None:
        type(self).arrived.set()
        type(self).release.wait(60)
        with contextlib.suppress(OSError):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.jmeter
async def test_a_stop_that_cuts_the_only_sample_in_flight_ends_finished(
    runtime: DockerRuntime, docker_client: Any, jmeter_image: str
) -> None:
    """StopTestNow aborts the request JMeter is reading an answer of ("Socket closed"): when that
    sample was the run's only one (a stop racing a slow start), the run still ended as asked, not
    ``failed`` with "every sample failed"."""
    _Holding.arrived.clear()
    _Holding.release.clear()
    httpd = _Server(("127.0.0.1", 0), _Holding)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        props = {"host": "127.0.0.1", "port": str(httpd.server_address[1]), "users": "1", "duration": "120",
                 "think_ms": "50"}  # fmt: skip
        command = _launch(jmeter_image, properties=props)
        command.launch.plan = (ROOT / "examples" / "http-get.jmx").read_text()  # type: ignore[union-attr]
        cid = command.container_id
        await runtime.launch(command)

        async def in_flight() -> bool:
            return _Holding.arrived.is_set()

        await wait_until_async(in_flight, timeout=90, what="JMeter's first request at the target")
        assert await runtime.stop(cid, grace_s=60) == "StopTestNow sent"
        done = await _reported(runtime, cid, "finished", "failed", within=60, what="graceful stop")
        assert (done.state, done.exit_code, done.error) == ("finished", 0, None)
        assert done.final is not None and (done.final.samples, done.final.errors) == (1, 1), "the cut sample"
    finally:
        _Holding.release.set()
        httpd.shutdown()
        httpd.server_close()


async def test_agent_network_mode_applies_unless_the_launch_names_another(
    tmp_path: Path, docker_client: Any, fake_jmeter_image: str, agent_id: str
) -> None:
    runtime = DockerRuntime(tmp_path / "work", agent_id, network_mode="bridge")
    await runtime.check_engine()
    try:
        default = await runtime.launch(_launch(fake_jmeter_image))
        explicit = await runtime.launch(_launch(fake_jmeter_image, network_mode="none"))
        inspect = docker_client.api.inspect_container
        modes = [inspect(t.docker_id)["HostConfig"]["NetworkMode"] for t in (default, explicit)]
        assert modes == ["bridge", "none"]
        await _reported(runtime, default.container_id, "running", within=10, what="running")
        assert await runtime.stop(default.container_id, grace_s=0.5) == "StopTestNow sent", (
            "sent to the container's address"
        )
        done = await _reported(runtime, default.container_id, "finished", within=30, what="stopped")
        assert done.exit_code == 143
    finally:
        await runtime.aclose()
