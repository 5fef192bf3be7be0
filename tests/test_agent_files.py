"""The files a launch brings, agent side (issue 12 part 4): fetched over the agent's own link,
streamed to disk, checked, cached by SHA-256, placed beside the plan, cancelled by a stop.

The server's side is another engineer's; these tests talk to a small real HTTP peer written here
(stdlib ``http.server`` on 127.0.0.1) that serves files from disk in 64 KiB chunks, checks the
agent's token, can corrupt an answer or serve slowly, and notes a connection the agent closed.
The real JMeter image then reads a CSV data set placed this way; the end-to-end split between two
agents runs against the real server once it takes files (``POST /files``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.containers import DockerRuntime
from agent.link import ServerLink
from agent.records import STOPPED_BEFORE_START, LaunchError, Tracked
from agent.settings import parse_settings
from agent.state import Identity
from agent.testfiles import CACHE, TestFiles, checked_files
from octotui.protocol import LABEL_AGENT, Command, LaunchFile, LaunchSpec
from tests.support.admin import create_provider
from tests.support.images import PLAN
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.waiting import wait_until, wait_until_async

AGENT_ID = "agent-files"
AGENT_TOKEN = "agent-token-files"
IDENTITY = Identity(agent_id=AGENT_ID, agent_token=AGENT_TOKEN, server="")
CHUNK = 64 * 1024


class FilePeer(ThreadingHTTPServer):
    """A control server's stand-in for ``GET /api/v1/agents/A/files/KEY``: serves ``files[KEY]`` from disk."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FileHandler)
        self.lock = threading.Lock()
        self.files: dict[str, Path] = {}
        #: Answers to corrupt (one byte changed), per key.
        self.corrupt: dict[str, int] = {}
        #: Seconds between two chunks sent.
        self.delay = 0.0
        self.requests: list[str] = []
        #: Set when the agent closed a connection before the whole file was sent.
        self.aborted = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, key: str, source: Path, query: str = "") -> LaunchFile:
        """Serve ``source`` as ``key``; the launch file naming it (as ``source``'s name)."""
        self.files[key] = source
        path = f"/agents/{AGENT_ID}/files/{key}{query}"
        return LaunchFile(name=source.name, path=path, size=source.stat().st_size,
                          sha256=_sha256(source))  # fmt: skip

    def requests_of(self, key: str) -> int:
        with self.lock:
            return sum(1 for path in self.requests if path.split("?")[0].endswith(f"/files/{key}"))


class FileHandler(BaseHTTPRequestHandler):
    server: FilePeer
    protocol_version = "HTTP/1.1"

    def log_message(*args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
        if self.headers.get("Authorization") != f"Bearer {AGENT_TOKEN}":
            self._json(403, {"detail": "not this agent's token"})
            return
        key = self.path.split("?")[0].rsplit("/", 1)[-1]
        source = self.server.files.get(key) if self.path.startswith(f"/api/v1/agents/{AGENT_ID}/files/") else None
        if source is None:
            self._json(404, {"detail": f"no file {key}"})
            return
        with self.server.lock:
            corrupt = self.server.corrupt.get(key, 0) > 0
            if corrupt:
                self.server.corrupt[key] -= 1
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(source.stat().st_size))
        self.end_headers()
        with source.open("rb") as reader:
            while chunk := reader.read(CHUNK):
                if corrupt:
                    chunk, corrupt = bytes([chunk[0] ^ 0xFF]) + chunk[1:], False
                try:
                    self.wfile.write(chunk)
                except OSError:  # the agent closed the connection
                    self.server.aborted.set()
                    return
                if self.server.delay:
                    time.sleep(self.server.delay)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _random_file(path: Path, size: int) -> Path:
    with path.open("wb") as writer:
        left = size
        while left:
            writer.write(os.urandom(min(left, 1024 * 1024)))
            left -= min(left, 1024 * 1024)
    return path


@pytest.fixture
def peer() -> Iterator[FilePeer]:
    server = FilePeer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
async def files(peer: FilePeer, tmp_path: Path) -> AsyncIterator[TestFiles]:
    link = ServerLink(parse_settings(["--server", peer.url, "--state-dir", str(tmp_path / "state")], env={}))
    yield TestFiles(link, lambda: IDENTITY, tmp_path / "work")
    await link.aclose()


def _tracked(cid: str, test_id: str = "t-files") -> Tracked:
    return Tracked(cid, test_id, None, "starting")


def _cache(work: Path) -> list[str]:
    return sorted(p.name for p in (work / CACHE).iterdir()) if (work / CACHE).exists() else []


# --- Fetched over the agent's link, streamed, checked against the launch's size and SHA-256.


async def test_a_50_mb_file_is_streamed_to_disk_not_held_in_memory(
    peer: FilePeer, files: TestFiles, tmp_path: Path
) -> None:
    size = 50 * 1024 * 1024
    item = peer.add("big", _random_file(tmp_path / "big.csv", size))
    plan_dir = tmp_path / "work" / "c-1" / "plan"
    plan_dir.mkdir(parents=True)
    tracked = _tracked("c-1")
    tracemalloc.start()
    try:
        started = time.monotonic()
        await files.place(tracked, [item], plan_dir)
        took = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    placed = plan_dir / "big.csv"
    assert placed.stat().st_size == size and _sha256(placed) == item.sha256
    assert tracked.pull_progress == 1.0
    print(f"50 MiB fetched in {took:.2f} s (tracemalloc on), Python memory peak {peak / 2**20:.1f} MiB")
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte file: not streamed"


async def test_a_mismatch_is_tried_once_more_then_fails_naming_the_file(
    peer: FilePeer, files: TestFiles, tmp_path: Path
) -> None:
    item = peer.add("users", _random_file(tmp_path / "users.csv", 300_000), query="?test=t-files")
    plan_dir = tmp_path / "work" / "c-1" / "plan"
    plan_dir.mkdir(parents=True)
    peer.corrupt["users"] = 1  # the first answer is damaged, the second is right
    await files.place(_tracked("c-1"), [item], plan_dir)
    assert peer.requests_of("users") == 2 and files.fetched == 1
    assert _sha256(plan_dir / "users.csv") == item.sha256

    other = peer.add("other", _random_file(tmp_path / "other.csv", 300_000))
    peer.corrupt["other"] = 2  # both answers damaged
    with pytest.raises(LaunchError) as failed:
        await files.place(_tracked("c-2"), [other], tmp_path / "work" / "c-1" / "plan")
    text = str(failed.value)
    assert "other.csv" in text and "2 attempts" in text and "SHA-256" in text, text
    assert peer.requests_of("other") == 2
    assert not (plan_dir / "other.csv").exists()
    assert _cache(tmp_path / "work") == [item.sha256], "no damaged entry or partial file is kept"


async def test_a_refusal_of_the_server_fails_at_once(peer: FilePeer, files: TestFiles, tmp_path: Path) -> None:
    item = LaunchFile(name="gone.csv", path=f"/agents/{AGENT_ID}/files/gone", size=3, sha256="0" * 64)
    with pytest.raises(LaunchError, match=r"cannot fetch file gone\.csv: .*404.*no file gone"):
        await files.place(_tracked("c-1"), [item], tmp_path)
    assert peer.requests_of("gone") == 1, "a 4xx is not asked again"


@pytest.mark.parametrize("name", ["../users.csv", "a/b.csv", "..", ".", "a\\b.csv", "/etc/passwd", ""])
def test_a_name_that_is_a_path_is_refused(name: str) -> None:
    spec = LaunchSpec(test_id="t", container_id="c", image="i", plan=PLAN,
                      files=[LaunchFile(name=name, path="/files/x", size=1, sha256="a" * 64)])  # fmt: skip
    with pytest.raises(LaunchError, match="a plain file name is expected, never a path"):
        checked_files(spec)


@pytest.mark.parametrize("path", ["http://127.0.0.2/x", "//127.0.0.2/x", "files/x", "/files/../../x"])
def test_a_path_that_could_lead_elsewhere_is_refused(path: str) -> None:
    spec = LaunchSpec(test_id="t", container_id="c", image="i", plan=PLAN,
                      files=[LaunchFile(name="users.csv", path=path, size=1, sha256="a" * 64)])  # fmt: skip
    with pytest.raises(LaunchError, match=r"users\.csv: not a path under the server's API"):
        checked_files(spec)


def test_a_name_given_twice_or_the_plans_is_refused() -> None:
    one = LaunchFile(name="users.csv", path="/files/x", size=1, sha256="a" * 64)
    for listed in ([one, one], [one.model_copy(update={"name": "plan.jmx"})]):
        with pytest.raises(LaunchError, match="names it twice, or it is the plan's"):
            checked_files(LaunchSpec(test_id="t", container_id="c", image="i", plan=PLAN, files=listed))


# --- Files are cached by SHA-256: a copied file is fetched once per agent, and freed with its last container.


async def test_two_containers_sharing_a_file_fetch_it_once(peer: FilePeer, files: TestFiles, tmp_path: Path) -> None:
    copied = peer.add("copied", _random_file(tmp_path / "users.csv", 2_000_000))
    for folder in ("s1", "s2"):
        (tmp_path / folder).mkdir()
    share1 = peer.add("share1", _random_file(tmp_path / "s1" / "part.csv", 1000))
    share2 = peer.add("share2", _random_file(tmp_path / "s2" / "part.csv", 1000))
    work = tmp_path / "work"
    one, two = _tracked("c-1"), _tracked("c-2")
    one.files, two.files = [copied.sha256, share1.sha256], [copied.sha256, share2.sha256]
    for cid in ("c-1", "c-2"):
        (work / cid / "plan").mkdir(parents=True)
    await asyncio.gather(
        files.place(one, [copied, share1], work / "c-1" / "plan"),
        files.place(two, [copied, share2], work / "c-2" / "plan"),
    )
    assert peer.requests_of("copied") == 1, "the copied file is fetched once for both containers"
    assert peer.requests_of("share1") == peer.requests_of("share2") == 1
    assert (files.fetched, files.reused) == (3, 1)
    first, second = work / "c-1" / "plan" / "users.csv", work / "c-2" / "plan" / "users.csv"
    assert first.stat().st_ino == second.stat().st_ino, "placed as links of one cache entry"
    assert _sha256(work / "c-2" / "plan" / "part.csv") == share2.sha256

    one.state = "finished"
    assert files.prune([one, two]) == [share1.sha256], "what c-2 still needs stays"
    assert _cache(work) == sorted([copied.sha256, share2.sha256])
    two.state = "failed"
    assert sorted(files.prune([one, two])) == sorted([copied.sha256, share2.sha256])
    assert _cache(work) == []
    assert _sha256(first) == copied.sha256, "a placed file outlives its cache entry"


# --- with Docker -------------------------------------------------------------------------------


@pytest.fixture
def agent_id(docker_client: Any) -> Iterator[str]:
    value = f"a-files-{uuid.uuid4().hex[:10]}"
    yield value
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={value}"}):
        container.remove(force=True)


@pytest.fixture
async def runtime(tmp_path: Path, agent_id: str, files: TestFiles) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(files.cache.parent, agent_id, state_file=tmp_path / "containers.json", files=files)
    info, _ = await rt.check_engine()
    assert info.available
    yield rt
    await rt.aclose()


def _launch(image: str, cid: str, plan: str = PLAN, **spec: Any) -> Command:
    launch = LaunchSpec(test_id="t-files", container_id=cid, image=image, plan=plan, **spec)
    return Command(id=f"cmd-{cid}", kind="launch", container_id=cid, test_id="t-files", launch=launch)


# --- The runtime fetches before it creates, places in the plan folder, and a stop cancels a fetch.


@pytest.mark.docker
@pytest.mark.xdist_group("agent-docker")
async def test_stop_during_a_slow_download_cancels_it_at_once(
    peer: FilePeer, runtime: DockerRuntime, fake_jmeter_image: str, docker_client: Any,
    agent_id: str, tmp_path: Path,
) -> None:  # fmt: skip
    item = peer.add("slow", _random_file(tmp_path / "slow.csv", 20 * 1024 * 1024))
    peer.delay = 0.05  # ~1.3 MB/s: about 16 s for the whole file
    launching = asyncio.create_task(runtime.launch(_launch(fake_jmeter_image, "c-slow", files=[item])))

    async def downloading() -> bool:
        tracked = runtime.tracked("c-slow")
        return tracked is not None and tracked.state == "starting" and (tracked.pull_progress or 0) > 0

    await wait_until_async(downloading, timeout=20, what="the download under way")
    report = next(r for r in await runtime.reports() if r.container_id == "c-slow")
    assert report.state == "starting" and 0 < (report.pull_progress or 0) < 1, report
    started = time.monotonic()
    outcome = await runtime.stop("c-slow", 20.0)
    with pytest.raises(LaunchError, match=STOPPED_BEFORE_START):
        await launching
    took = time.monotonic() - started
    print(f"stop during a download: launch ended in {took * 1000:.0f} ms ({outcome})")
    assert took < 1.0
    wait_until(peer.aborted.is_set, timeout=5, what="the agent to close the download's connection")
    ended = next(r for r in await runtime.reports() if r.container_id == "c-slow")
    assert (ended.state, ended.error) == ("failed", STOPPED_BEFORE_START)
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"})
    assert _cache(runtime.work_dir) == [], "no partial file, and no entry kept for a stopped container"


@pytest.mark.docker
@pytest.mark.xdist_group("agent-docker")
async def test_a_copied_file_reaches_two_containers_once_and_leaves_with_them(
    peer: FilePeer, runtime: DockerRuntime, fake_jmeter_image: str, docker_client: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    source = tmp_path / "users.csv"
    source.write_text("user\nalice\nbob\n")
    item = peer.add("users", source)
    await asyncio.gather(*(runtime.launch(_launch(fake_jmeter_image, cid, files=[item])) for cid in ("c-a", "c-b")))
    assert peer.requests_of("users") == 1
    for cid in ("c-a", "c-b"):
        tracked = runtime.tracked(cid)
        assert tracked is not None and tracked.docker_id is not None and tracked.state == "running"
        seen = docker_client.containers.get(tracked.docker_id).exec_run(["/bin/busybox", "cat", "/plan/users.csv"])
        assert seen.output == b"user\nalice\nbob\n", seen
    assert _cache(runtime.work_dir) == [item.sha256]
    await runtime.stop("c-a", 0.0)

    async def ended(cid: str) -> bool:
        tracked = runtime.tracked(cid)
        return tracked is not None and tracked.terminal

    await wait_until_async(lambda: ended("c-a"), timeout=30, what="c-a ended")
    assert _cache(runtime.work_dir) == [item.sha256], "c-b still lives: the entry stays"
    await runtime.stop("c-b", 0.0)
    await wait_until_async(lambda: ended("c-b"), timeout=30, what="c-b ended")
    assert _cache(runtime.work_dir) == []
    assert not (runtime.work_dir / "c-a" / "plan").exists(), "placed files go with the plan folder"


@pytest.mark.docker
@pytest.mark.xdist_group("agent-docker")
async def test_a_refused_name_fails_the_launch_and_fetches_nothing(
    peer: FilePeer, runtime: DockerRuntime, fake_jmeter_image: str, docker_client: Any,
    agent_id: str,
) -> None:  # fmt: skip
    bad = LaunchFile(name="../../etc/cron.d/x", path=f"/agents/{AGENT_ID}/files/x", size=1, sha256="a" * 64)
    with pytest.raises(LaunchError, match="never a path"):
        await runtime.launch(_launch(fake_jmeter_image, "c-bad", files=[bad]))
    report = next(r for r in await runtime.reports() if r.container_id == "c-bad")
    assert report.state == "failed" and "never a path" in (report.error or "")
    assert peer.requests == []
    assert not docker_client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"})


def csv_plan(port: int) -> str:
    """One thread reads ``users.csv`` (variable ``user``) to its end, requesting ``/hit?u=${user}`` per line."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<jmeterTestPlan version="1.2" properties="5.0">
  <hashTree>
    <TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="csv" enabled="true">
      <elementProp name="TestPlan.user_defined_variables" elementType="Arguments">
        <collectionProp name="Arguments.arguments"/>
      </elementProp>
    </TestPlan>
    <hashTree>
      <ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="users" enabled="true">
        <stringProp name="ThreadGroup.on_sample_error">continue</stringProp>
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController">
          <boolProp name="LoopController.continue_forever">false</boolProp>
          <intProp name="LoopController.loops">-1</intProp>
        </elementProp>
        <stringProp name="ThreadGroup.num_threads">1</stringProp>
        <stringProp name="ThreadGroup.ramp_time">0</stringProp>
        <boolProp name="ThreadGroup.scheduler">true</boolProp>
        <stringProp name="ThreadGroup.duration">120</stringProp>
        <stringProp name="ThreadGroup.delay">0</stringProp>
      </ThreadGroup>
      <hashTree>
        <CSVDataSet guiclass="TestBeanGUI" testclass="CSVDataSet" testname="users" enabled="true">
          <stringProp name="filename">users.csv</stringProp>
          <stringProp name="fileEncoding">UTF-8</stringProp>
          <stringProp name="variableNames">user</stringProp>
          <boolProp name="ignoreFirstLine">false</boolProp>
          <stringProp name="delimiter">,</stringProp>
          <boolProp name="quotedData">false</boolProp>
          <boolProp name="recycle">false</boolProp>
          <boolProp name="stopThread">true</boolProp>
          <stringProp name="shareMode">shareMode.all</stringProp>
        </CSVDataSet>
        <hashTree/>
        <HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="hit" enabled="true">
          <elementProp name="HTTPsampler.Arguments" elementType="Arguments">
            <collectionProp name="Arguments.arguments"/>
          </elementProp>
          <stringProp name="HTTPSampler.domain">127.0.0.1</stringProp>
          <stringProp name="HTTPSampler.port">{port}</stringProp>
          <stringProp name="HTTPSampler.protocol">http</stringProp>
          <stringProp name="HTTPSampler.path">/hit?u=${{user}}</stringProp>
          <stringProp name="HTTPSampler.method">GET</stringProp>
          <boolProp name="HTTPSampler.follow_redirects">true</boolProp>
          <boolProp name="HTTPSampler.use_keepalive">true</boolProp>
        </HTTPSamplerProxy>
        <hashTree/>
      </hashTree>
    </hashTree>
  </hashTree>
</jmeterTestPlan>
"""


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("agent-docker")
async def test_real_jmeter_reads_a_relative_csv_placed_beside_the_plan(
    peer: FilePeer, runtime: DockerRuntime, jmeter_image: str, http_target: Any, tmp_path: Path
) -> None:
    """JMeter resolves ``users.csv`` against the plan's folder: the placed file is read line by line, once."""
    users = [f"user{n}" for n in range(7)]
    source = tmp_path / "users.csv"
    source.write_text("".join(f"{u}\n" for u in users))
    item = peer.add("users", source)
    await runtime.launch(_launch(jmeter_image, "c-csv", plan=csv_plan(http_target.port), files=[item]))

    async def ended() -> Any:
        tracked = runtime.tracked("c-csv")
        return tracked if tracked is not None and tracked.terminal else None

    tracked = await wait_until_async(ended, timeout=90, interval=0.5, what="JMeter to end at the CSV's end")
    assert tracked.state == "finished", (tracked.state, tracked.error)
    hits = {path: count for path, count in http_target.paths.items() if path.startswith("/hit")}
    assert hits == {f"/hit?u={u}": 1 for u in users}, hits


# --- end to end: a real server splits a CSV between two agents ------------------------------------


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
def test_a_split_csv_reaches_each_line_once_over_two_agents(  # type: ignore[no-untyped-def]
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, jmeter_image: str, http_target
) -> None:
    api = server.client()
    users = [f"user{n}" for n in range(10)]
    uploaded = api.post("/files", params={"name": "users.csv"}, content="".join(f"{u}\n" for u in users).encode(),
                        headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    if uploaded.status_code in (404, 405):
        pytest.skip("the server does not take test files yet (POST /api/v1/files)")
    assert uploaded.status_code in (200, 201), uploaded.text
    provider = create_provider(api, "lab")
    for name, location in (("gen-a", "paris"), ("gen-b", "lyon")):
        agents.append(
            AgentProcess(server.url, provider["token"], tmp_path / name, location=location, name=name).start()
        )

    def online() -> list[Any] | None:
        found = [
            a for a in api.get("/agents").json() if a["status"] == "online" and (a.get("docker") or {}).get("available")
        ]
        return found if len(found) >= 2 else None

    wait_until(online, timeout=40, what="2 online agents with Docker")
    spec = {"name": "split csv", "plan": csv_plan(http_target.port), "provider": provider["name"], "containers": 2,
            "image": jmeter_image, "files": [{"id": uploaded.json()["id"], "split": True}]}  # fmt: skip
    created = api.post("/tests", json=spec)
    assert created.status_code == 201, created.text
    test = created.json()
    assert len({c["agent"] for c in test["containers"]}) == 2, "one container on each agent"

    def ended() -> Any:
        current = api.get(f"/tests/{test['id']}").json()
        return current if current["state"] in ("finished", "failed") else None

    final = wait_until(ended, timeout=120, interval=1, what="both containers to reach the end of their share")
    assert final["state"] == "finished", [(c["state"], c["error"]) for c in final["containers"]]
    hits = {path: count for path, count in http_target.paths.items() if path.startswith("/hit")}
    assert hits == {f"/hit?u={u}": 1 for u in users}, hits
