"""agent/engine.py, the agent's own Docker Engine API client, against the real engine.

The engine is reached on its unix socket, and over ``tcp://`` through the tests' relay (a loopback
port forwarding to the socket), as ``DOCKER_HOST`` would name a remote engine.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.engine import Engine, EngineUnreachable, NotFound, parse_image
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import wait_until_async

SOCKET = "/var/run/docker.sock"


def test_image_references_split_like_docker_does() -> None:
    assert parse_image("octotui-jmeter:local") == ("octotui-jmeter", "local")
    assert parse_image("justb4/jmeter") == ("justb4/jmeter", "latest")
    assert parse_image("localhost:5000/team/jmeter") == ("localhost:5000/team/jmeter", "latest")
    assert parse_image("localhost:5000/team/jmeter:5.5") == ("localhost:5000/team/jmeter", "5.5")
    assert parse_image("jmeter@sha256:abc") == ("jmeter", "sha256:abc")


async def test_no_engine_and_unusable_addresses_say_so(tmp_path: Path) -> None:
    engine = Engine(f"unix://{tmp_path}/none.sock")
    with pytest.raises(EngineUnreachable, match=r"no Docker engine answers at unix://.*none\.sock"):
        await engine.ping()
    await engine.aclose()
    for host in ("ssh://user@example", "npipe:////./pipe/docker_engine", "unix://"):
        with pytest.raises(ValueError, match="DOCKER_HOST"):
            Engine(host)


@pytest.fixture(params=["unix", "tcp"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    """The real engine, on its socket or as ``tcp://127.0.0.1:PORT``."""
    if request.param == "unix":
        client = Engine(f"unix://{SOCKET}")
        yield client
        await client.aclose()
        return
    with FaultProxy(SOCKET) as relay:
        client = Engine(f"tcp://127.0.0.1:{relay.port}", env={})
        yield client
        await client.aclose()


pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("agent-docker")]


async def test_engine_answers_and_refuses_clearly(engine: Engine, fake_jmeter_image: str) -> None:
    await engine.ping()
    assert (await engine.version())["Version"]
    assert (await engine.inspect_image(fake_jmeter_image))["Id"].startswith("sha256:")
    with pytest.raises(NotFound, match="No such image") as missing:
        await engine.inspect_image("octotui-no-such-image:nope")
    assert missing.value.status == 404
    with pytest.raises(NotFound, match="No such container"):
        await engine.inspect("octotui-no-such-container")
    with pytest.raises(NotFound):
        await engine.remove("octotui-no-such-container")


async def test_logs_unwrap_the_multiplexed_frames(engine: Engine, fake_jmeter_image: str) -> None:
    """stdout and stderr of a container without a TTY, one frame each write, some longer than a read."""
    label = f"io.octotui.test-engine={uuid.uuid4().hex[:10]}"
    script = "echo one; echo two >&2; /bin/busybox seq 1 20000; echo last"
    config = {"Image": fake_jmeter_image, "Entrypoint": ["/bin/busybox", "sh", "-c", script],
              "Labels": dict([label.split("=")]), "Tty": False}  # fmt: skip
    cid = await engine.create(f"octotui-test-{uuid.uuid4().hex[:10]}", config)
    try:
        assert [c["Id"] for c in await engine.containers([label])] == [cid]
        await engine.start(cid)

        async def exited() -> bool:
            return not (await engine.inspect(cid))["State"]["Running"]

        # The logs of a container still writing are what it wrote so far: read them once it ended.
        await wait_until_async(exited, timeout=30, what="the container's script to end")
        out = b"".join([chunk async for chunk in engine.logs(cid)])
        lines = out.decode().splitlines()
        # The engine copies stdout and stderr separately: stderr's line may come anywhere among
        # stdout's, which keep their order. No frame header may be left in any line.
        assert lines.count("two") == 1, "stderr is in the stream, once"
        lines.remove("two")
        assert lines == ["one", *(str(n) for n in range(1, 20001)), "last"], "stdout whole, in order, unwrapped"
        assert (await engine.inspect(cid))["State"]["ExitCode"] == 0
    finally:
        await engine.remove(cid)
    assert await engine.containers([label]) == []


def test_the_agent_does_not_load_the_docker_sdk() -> None:
    """The agent speaks to the engine over its own httpx: no docker SDK, no requests/urllib3 (~7 MB RSS)."""
    check = ("import sys, agent.__main__, agent.runtime; "
             "loaded = [m for m in ('docker', 'requests', 'urllib3') if m in sys.modules]; "
             "assert not loaded, loaded")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
