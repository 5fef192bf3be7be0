"""The agent's side of issue 10: a stop is honoured in every state, identity belongs to the state
dir, an unwritable state ends cleanly before registering, no false success, exhaustive dispatch.

Real parts where they matter: the Docker engine (a registry that never answers makes a pull that
hangs; the stand-in JMeter image of ``test_agent_docker``), the real JMeter image, real agent and
server processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.containers import DockerRuntime
from agent.launches import LABEL_INSTANCE, RESERVED_PROPERTIES, reserved_properties
from agent.records import STOPPED_BEFORE_START, LaunchError, Tracked
from agent.runtime import AgentRuntime
from agent.settings import parse_settings
from agent.state import load_instance
from octotui.protocol import LABEL_AGENT, TERMINAL_CONTAINER_STATES, Command, LaunchSpec
from tests.support.admin import create_provider
from tests.support.faultkit import PLAN as HTTP_PLAN
from tests.support.faultkit import Reaper, get_test, launch, log_figure, of_test, online, since, start_agent
from tests.support.images import PLAN
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.waiting import wait_until, wait_until_async

#: What the real octotui-jmeter image (JMeter 2.13) prints for ``-J=foo`` (an empty property
#: name) before it exits 0 in half a second, without writing any jmeter.log (captured 2026-12-06).
JMETER_J_PARSE_ERROR = [
    "Error: Unable to parse first argument for option -J",
    "Try 'jmeter --help' for more information.",
]


def _launch(image: str, *, cid: str | None = None, plan: str = PLAN, **spec: Any) -> Command:
    cid = cid or f"c-{uuid.uuid4().hex[:8]}"
    launch = LaunchSpec(test_id="t-hard", container_id=cid, image=image, plan=plan, **spec)
    return Command(id=f"cmd-{uuid.uuid4().hex[:8]}", kind="launch", container_id=cid, test_id="t-hard", launch=launch)


async def _report(runtime: DockerRuntime, cid: str) -> Any:
    return next((r for r in await runtime.reports() if r.container_id == cid), None)


def _ours(docker_client: Any, agent_id: str) -> list[Any]:
    return list(docker_client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"}))


@pytest.fixture
def agent_id(docker_client: Any) -> Iterator[str]:
    value = f"a-hard-{uuid.uuid4().hex[:10]}"
    yield value
    for container in _ours(docker_client, value):
        with contextlib.suppress(Exception):
            container.remove(force=True)


@pytest.fixture
async def runtime(tmp_path: Path, agent_id: str) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(tmp_path / "work", agent_id, state_file=tmp_path / "containers.json", instance="i-one-1234")
    info, _ = await rt.check_engine()
    assert info.available
    yield rt
    await rt.aclose()


@pytest.fixture
def silent_registry() -> Iterator[str]:
    """A 'registry' on 127.0.0.1 that accepts connections and never answers: a pull of it hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    closing.set()
    server.close()
    for conn in held:
        conn.close()


# --- 1. stop in every state --------------------------------------------------------------------


# A stop takes effect whatever the container's state, and repeats of it are cheap.


async def test_stop_before_the_launch_is_remembered_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "containers.json"
    first = DockerRuntime(tmp_path / "work", "a-1", state_file=state)
    assert await first.stop("c-early", 20.0) == "not running on this agent"
    assert await first.stop("c-early", 20.0) == "not running on this agent"  # a repeat is a no-op
    assert (tmp_path / "stops.json").read_text() == '["c-early"]'  # beside the command log, once
    await first.aclose()
    again = DockerRuntime(tmp_path / "work", "a-1", state_file=state)  # the agent restarted
    with pytest.raises(LaunchError, match=STOPPED_BEFORE_START):
        await again.launch(_launch("octotui-jmeter:local", cid="c-early"))
    report = await _report(again, "c-early")
    assert report.state == "failed" and report.error == STOPPED_BEFORE_START
    # its terminal report survives a restart too, until delivered
    third = DockerRuntime(tmp_path / "work", "a-1", state_file=state)
    assert (await _report(third, "c-early")).state == "failed"
    assert not (tmp_path / "work" / "c-early").exists()


@pytest.mark.docker
async def test_stop_during_a_pull_cancels_it_at_once(
    runtime: DockerRuntime, silent_registry: str, docker_client: Any, agent_id: str
) -> None:
    command = _launch(f"{silent_registry}/octotui-never:1")
    launching = asyncio.create_task(runtime.launch(command))
    await wait_until_async(
        lambda: _is(runtime, command.container_id, "pulling"), timeout=20, what="the launch pulling its image"
    )
    asked = time.monotonic()
    assert await runtime.stop(command.container_id, 20.0) == "stopping before start"
    with pytest.raises(LaunchError, match=STOPPED_BEFORE_START):
        await asyncio.wait_for(launching, timeout=10)
    took = time.monotonic() - asked
    assert took < 2.0, f"the launch ended {took:.1f} s after the stop"
    report = await _report(runtime, command.container_id)
    assert report.state == "failed" and report.error == STOPPED_BEFORE_START
    assert not _ours(docker_client, agent_id)
    log_figure("stop during pull", ended_s=round(took, 2))


@pytest.mark.docker
@pytest.mark.parametrize("step", ["create", "start"])
async def test_stop_while_creating_or_starting_leaves_nothing_running(
    runtime: DockerRuntime, fake_jmeter_image: str, docker_client: Any, agent_id: str, step: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    command = _launch(fake_jmeter_image)
    engine = runtime._engine
    assert engine is not None
    original = getattr(engine, step)

    async def step_then_stop(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        # the stop comes while the engine call was under way
        assert await runtime.stop(command.container_id, 20.0) == "stopping before start"
        return result

    monkeypatch.setattr(engine, step, step_then_stop)
    with pytest.raises(LaunchError, match=STOPPED_BEFORE_START):
        await runtime.launch(command)
    report = await _report(runtime, command.container_id)
    assert report.state == "failed" and report.error == STOPPED_BEFORE_START
    assert not _ours(docker_client, agent_id), "a container was left behind"


@pytest.mark.docker
async def test_a_repeated_stop_forces_docker_stop_when_the_first_was_lost(
    runtime: DockerRuntime, fake_jmeter_image: str, docker_client: Any, agent_id: str,
) -> None:  # fmt: skip
    command = _launch(fake_jmeter_image)  # the stand-in ignores StopTestNow, as a hung JMeter would
    await runtime.launch(command)
    cid = command.container_id
    runtime.stop_margin_s = 0.5
    assert await runtime.stop(cid, 1.0) == "StopTestNow sent"
    # the fallback that would docker stop it is lost (as by a crash of that task)
    for task in [t for t in runtime._tasks if t.get_name() == f"stop-{cid}"]:
        task.cancel()
    assert await runtime.stop(cid, 1.0) == "already stopping"  # within its grace: a cheap no-op
    await asyncio.sleep(0)  # let the cancelled task end
    await wait_until_async(
        lambda: _forced(runtime, cid), timeout=10, what="a repeated stop past the grace forcing docker stop"
    )
    report = await wait_until_async(lambda: _is(runtime, cid, *TERMINAL_CONTAINER_STATES), timeout=30, what="its end")
    assert report.state == "finished" and "docker stop" in (report.error or "")
    wait_until(lambda: not _ours(docker_client, agent_id), timeout=15, what="the container removed")


async def _is(runtime: DockerRuntime, cid: str, *states: str) -> Any:
    report = await _report(runtime, cid)
    return report if report is not None and report.state in states else None


async def _forced(runtime: DockerRuntime, cid: str) -> bool:
    outcome = await runtime.stop(cid, 1.0)
    return outcome == "docker stop (repeated)"


@pytest.mark.docker
@pytest.mark.jmeter
def test_stop_soon_after_the_launch_stops_every_container(
    server: ServerProcess, agents: list[AgentProcess], reaper: Reaper, tmp_path: Path,
    docker_client: Any, jmeter_image: str, http_target: Any,
) -> None:  # fmt: skip
    """2 agents, 16 containers, the test stopped 1.2 s after its launch: nothing of it runs 40 s later."""
    api = server.client()
    prov = create_provider(api)
    for name in ("gen-a", "gen-b"):
        start_agent(server.url, prov, tmp_path, name, agents)
    online(api, ["gen-a", "gen-b"])
    test = launch(api, prov, jmeter_image, http_target.port, containers=16, duration=120)
    reaper.tests.add(test["id"])
    asked = time.monotonic()
    time.sleep(1.2)  # the stop must come while containers are still being launched: that is the fault
    stopped = api.post(f"/tests/{test['id']}/stop")
    assert stopped.status_code == 200, stopped.text

    def running() -> list[Any]:
        return [c for c in of_test(docker_client, test["id"]) if c.status in ("created", "running", "restarting")]

    def settled() -> dict[str, Any] | None:
        t = get_test(api, test["id"])
        ok = (
            t["state"] in ("finished", "failed")
            and all(c["state"] in TERMINAL_CONTAINER_STATES for c in t["containers"])
            and not running()
        )
        return t if ok else None

    try:
        final = wait_until(settled, timeout=40, interval=0.5, what="every container of the stopped test gone")
    except AssertionError:
        t = get_test(api, test["id"])
        states = sorted(f"{c['index']}:{c['state']}" for c in t["containers"])
        raise AssertionError(
            f"test {t['state']} ({t.get('reason')}); containers {states}; running {len(running())}"
        ) from None
    took = since(asked)
    wait_until(lambda: not of_test(docker_client, test["id"]), timeout=30, what="no container of the test left")
    states = [c["state"] for c in final["containers"]]
    log_figure("stop 1.2 s after launch", containers=16, settled_s=took, states=sorted(set(states)))


# --- 2. identity belongs to the state dir ------------------------------------------------------


def test_the_instance_id_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "instance"
    first = load_instance(path)
    assert len(first) == 32 and load_instance(path) == first
    assert load_instance(tmp_path / "other") != first
    path.write_text("?\n")  # damaged: replaced by a new one
    assert load_instance(path) not in ("?", first)


@pytest.mark.docker
async def test_adoption_takes_only_this_instances_containers(
    tmp_path: Path, agent_id: str, fake_jmeter_image: str, docker_client: Any,
) -> None:  # fmt: skip
    """Two state dirs handed one agent id (a server that matched them by name) never share containers."""
    mine = DockerRuntime(tmp_path / "w1", agent_id, state_file=tmp_path / "s1.json", instance="instance-one")
    await mine.check_engine()
    command = _launch(fake_jmeter_image)
    await mine.launch(command)
    [container] = _ours(docker_client, agent_id)
    assert container.labels[LABEL_INSTANCE] == "instance-one"
    await mine.aclose()
    other = DockerRuntime(tmp_path / "w2", agent_id, state_file=tmp_path / "s2.json", instance="instance-two")
    same = DockerRuntime(tmp_path / "w1", agent_id, state_file=tmp_path / "s1.json", instance="instance-one")
    try:
        await other.check_engine()
        await same.check_engine()
        assert await other.adopt() == []
        assert await same.adopt() == [command.container_id]
    finally:
        await other.aclose()
        await same.aclose()


def test_same_named_agents_keep_distinct_identities(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    """Two agents named alike on one provider: two ids, each registered once, no flapping over 10 s."""
    api = server.client()
    prov = create_provider(api)
    # same --name (as two machines with one host name), different state dirs
    twins = [AgentProcess(server.url, prov["token"], tmp_path / f"twin-{i}", "paris", "same-host") for i in (1, 2)]
    for twin in twins:
        agents.append(twin.start())

    def both() -> list[dict[str, Any]] | None:
        found = [a for a in api.get("/agents").json() if a["name"] == "same-host" and a["status"] == "online"]
        return found if len(found) == 2 else None

    def evidence() -> str:
        lines = [f"{a['id']} {a['name']} {a['status']}" for a in api.get("/agents").json()]
        for twin in twins:
            lines += [f"{twin.state_dir.name}: {line}" for line in twin.log().splitlines() if "register" in line]
        return "\n".join(lines[:40])

    try:
        wait_until(both, timeout=30, interval=0.3, what="two online agents named same-host")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{evidence()}") from None
    time.sleep(10)  # the observation window itself: flapping shows as re-registrations within it
    found = both()
    assert found is not None and len({a["id"] for a in found}) == 2, api.get("/agents").json()
    for twin in twins:
        text = twin.log()
        assert text.count("registered again") == 0 and text.count("refused this agent's token") == 0, evidence()
    log_figure("same-named agents", ids=len({a["id"] for a in found}), window_s=10)


# --- 3. unwritable state -----------------------------------------------------------------------


def test_an_unwritable_identity_ends_cleanly_before_registering(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    api = server.client()
    prov = create_provider(api)
    agent = AgentProcess(server.url, prov["token"], tmp_path / "broken", "paris", "broken")
    (agent.state_dir / "identity.json").mkdir(parents=True)
    agents.append(agent.start())
    assert agent.proc is not None
    code = agent.proc.wait(timeout=30)
    text = agent.log()
    assert code not in (0, None), text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, text
    assert str(agent.state_dir / "identity.json") in errors[0] and "Is a directory" in errors[0], errors
    assert api.get("/agents").json() == [], "the provider token was presented before the state was checked"


# --- 4. no false success -----------------------------------------------------------------------


def _ended(runtime: DockerRuntime, tmp_path: Path, console: list[str], stop_requested: bool = False) -> Tracked:
    tracked = Tracked("c-end", "t-hard", "cmd-end", "running", docker_id="d")
    tracked.stop_requested = stop_requested
    for line in console:
        tracked.tracker.feed(line)
    (runtime.work_dir / "c-end" / "results").mkdir(parents=True, exist_ok=True)
    runtime._finish(tracked, 0, None)
    return tracked


def test_jmeter_refusing_its_arguments_and_exiting_0_is_a_failure(tmp_path: Path) -> None:
    runtime = DockerRuntime(tmp_path / "work", "a-1")
    tracked = _ended(runtime, tmp_path, ["Creating summariser <summary>", *JMETER_J_PARSE_ERROR])
    assert tracked.state == "failed"
    assert tracked.error == "Error: Unable to parse first argument for option -J"


def test_no_samples_is_a_failure_unless_a_stop_came_first(tmp_path: Path) -> None:
    runtime = DockerRuntime(tmp_path / "work", "a-1")
    tracked = _ended(runtime, tmp_path, ["Creating summariser <summary>", "... end of run"])
    assert (tracked.state, tracked.error) == ("failed", "JMeter recorded no samples")
    stopped = _ended(runtime, tmp_path, ["... end of run"], stop_requested=True)
    assert (stopped.state, stopped.error) == ("finished", None)


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.parametrize(
    ("properties", "error"),
    [
        ({"": "foo"}, "Error: Unable to parse first argument for option -J"),  # what an older server let through
        ({"users": "0"}, "JMeter recorded no samples"),
    ],
    ids=["empty-property-name", "zero-users"],
)
async def test_real_jmeter_runs_that_ran_nothing_are_failed(
    runtime: DockerRuntime, jmeter_image: str, http_target: Any, properties: dict[str, str], error: str
) -> None:
    props = {"host": "127.0.0.1", "port": str(http_target.port), "duration": "2", **properties}
    command = _launch(jmeter_image, plan=HTTP_PLAN, properties={"users": "1", **props})
    await runtime.launch(command)
    report = await wait_until_async(
        lambda: _is(runtime, command.container_id, *TERMINAL_CONTAINER_STATES), timeout=90, what="JMeter's end"
    )
    assert report.state == "failed", report
    assert error in (report.error or ""), report.error
    assert report.exit_code == 0  # JMeter itself said all was well


async def test_reserved_properties_are_refused_by_name(tmp_path: Path) -> None:
    assert RESERVED_PROPERTIES == ("jmeter.save.saveservice.", "jmeterengine.nongui.", "summariser.")
    names = ["jmeter.save.saveservice.output_format", "summariser.interval", "users", "jmeterengine.nongui.port"]
    assert reserved_properties(names) == [
        "jmeter.save.saveservice.output_format",
        "jmeterengine.nongui.port",
        "summariser.interval",
    ]
    assert reserved_properties(["jmeter.save.saveservice", "summariser", "my.summariser.interval"]) == []
    runtime = DockerRuntime(tmp_path / "work", "a-1")
    command = _launch("octotui-jmeter:local", properties={"jmeter.save.saveservice.output_format": "xml", "u": "1"})
    with pytest.raises(LaunchError, match=r"cannot be overridden: jmeter\.save\.saveservice\.output_format$"):
        await runtime.launch(command)
    assert runtime.tracked(command.container_id) is None  # refused before anything was made


# --- 6. exhaustive dispatch --------------------------------------------------------------------


class _RecordingDocker:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def stop(self, container_id: str, grace_s: float) -> str:
        self.calls.append(f"stop {container_id}")
        return "stopped"

    async def launch(self, command: Command) -> None:
        self.calls.append(f"launch {command.container_id}")


async def test_a_command_of_an_unknown_kind_is_never_run_as_a_stop(tmp_path: Path) -> None:
    settings = parse_settings(["--server=http://127.0.0.1:9", "--token=x", f"--state-dir={tmp_path}"])
    agent = AgentRuntime(settings)
    docker = _RecordingDocker()
    agent.docker = docker  # type: ignore[assignment]
    acks: list[Any] = []

    async def ack(command_id: str, outcome: Any) -> None:
        acks.append(outcome)

    agent._ack = ack  # type: ignore[method-assign,assignment]
    command = Command.model_construct(id="cmd-new", kind="drain", container_id="c-1", test_id="t-1", grace_s=1.0)  # type: ignore[arg-type]
    await agent._execute(command)
    assert docker.calls == []
    assert len(acks) == 1 and not acks[0].ok
    await agent.link.aclose()


# --- 5. a container taken back carries no stale error ------------------------------------------


@pytest.mark.docker
async def test_a_container_adopted_again_reports_no_old_error(
    runtime: DockerRuntime, fake_jmeter_image: str,
) -> None:  # fmt: skip
    command = _launch(fake_jmeter_image)
    await runtime.launch(command)
    await runtime._fail_all("docker engine unavailable: cut")  # what an engine lost does to every container
    assert (await _report(runtime, command.container_id)).error == "docker engine unavailable: cut"
    assert await runtime.adopt() == [command.container_id]  # the engine is back: the container still runs
    report = await _report(runtime, command.container_id)
    assert (report.state, report.error) == ("running", None)
