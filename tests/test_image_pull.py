"""A launch whose image is missing pulls it from a real registry and reports the pull's progress.

No public registry is reachable here, so the test runs Debian's ``docker-registry`` (the CNCF
distribution registry) on loopback, pushes a locally made image to it, removes the image from
the engine and launches a test with it. The tests' own relay sits between the engine and the
registry and slows each chunk, so the pull lasts a few seconds and the agent's progress reports
(``pulling``, 0 < progress < 1) can be seen through the API and in the dashboard's containers table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.images import import_fake_jmeter
from tests.support.processes import IN_CI, AgentProcess, ServerProcess, free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.docker]

PLAN = "<?xml version='1.0'?><jmeterTestPlan version='1.2'><hashTree><TestPlan/></hashTree></jmeterTestPlan>"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[FaultProxy]:
    """A real registry on loopback behind a relay (``relay.delay_s`` slows what passes)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        message = "docker-registry is missing: run `make test-tools` (Debian's docker-registry)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'blobs'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (tmp_path / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    relay = FaultProxy(("127.0.0.1", port)).start()
    try:
        import httpx

        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200, timeout=20,
                   what="the registry")  # fmt: skip
        yield relay
    finally:
        relay.stop()
        proc.terminate()
        proc.wait(timeout=10)


def _pushed_image(docker_client: Any, relay: FaultProxy, tmp_path: Path, base: str) -> str:
    """An image of a few MB (the stand-in JMeter plus incompressible bytes) pushed, then removed here."""
    tag = f"127.0.0.1:{relay.port}/octotui-pull-test:{os.getpid()}"
    busybox = tmp_path / "busybox"
    container = docker_client.containers.create(base)
    try:
        bits, _ = container.get_archive("/bin/busybox")
        with (tmp_path / "bb.tar").open("wb") as handle:
            for chunk in bits:
                handle.write(chunk)
    finally:
        container.remove()
    with tarfile.open(tmp_path / "bb.tar") as archive:
        archive.extract("busybox", tmp_path, filter="data")
    ballast = tmp_path / "ballast"
    ballast.write_bytes(os.urandom(6 * 1024 * 1024))
    import_fake_jmeter(docker_client, tag, busybox, tmp_path, ballast=ballast)
    repository, version = tag.rsplit(":", 1)
    for event in docker_client.api.push(repository, tag=version, stream=True, decode=True):
        assert "error" not in event, event
    docker_client.images.remove(tag, force=True)
    return tag


def test_missing_image_is_pulled_with_progress(
    server: ServerProcess, agents: list[AgentProcess], registry: FaultProxy, docker_client: Any,
    fake_jmeter_image: str, tmp_path: Path,
) -> None:  # fmt: skip
    image = _pushed_image(docker_client, registry, tmp_path, fake_jmeter_image)
    api = server.client()
    provider = api.post("/providers", json={"name": "pull"}).json()
    agents.append(AgentProcess(server.url, provider["token"], tmp_path / "agent", name="puller").start())
    wait_until(lambda: any((a.get("docker") or {}).get("available") for a in api.get("/agents").json()),
               timeout=30, what="the agent online with Docker")  # fmt: skip
    registry.delay_s = 0.05  # ~100 chunks of 64 KiB: a pull of several seconds
    created = api.post("/tests", json={"name": "pull", "plan": PLAN, "provider": "pull", "containers": 1,
                                       "image": image, "properties": {"fake.duration": "30"}})  # fmt: skip
    assert created.status_code == 201, created.text
    test_id = created.json()["id"]
    seen: list[float] = []

    def running() -> bool:
        container = api.get(f"/tests/{test_id}").json()["containers"][0]
        if container["state"] == "pulling" and container["pull_progress"] is not None:
            seen.append(container["pull_progress"])
        assert container["state"] not in ("failed", "lost"), container
        return bool(container["state"] == "running")

    try:
        wait_until(running, timeout=90, interval=0.2, what="the container running after its pull")
        assert any(0 < p < 1 for p in seen), f"progress seen while pulling: {seen}"
        assert seen == sorted(seen), "progress never goes back"
        assert docker_client.images.get(image), "the image is on the engine now"
        assert api.post(f"/tests/{test_id}/stop").status_code == 200
        wait_until(lambda: api.get(f"/tests/{test_id}").json()["state"] in ("finished", "failed"), timeout=60,
                   what="the test to end")  # fmt: skip
    finally:
        for c in docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test_id}"}):
            c.remove(force=True)
        docker_client.images.remove(image, force=True)
