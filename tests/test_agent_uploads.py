"""An ended container's JTL goes to the server and leaves the agent's disk (issue 12 part 9, agent
side), and a server that lost a container's labels gets them all again (``labels_wanted``).

The server's side of the upload is another engineer's; until it lands these tests talk to a small
real HTTP peer written here (stdlib ``http.server`` on 127.0.0.1) that checks what a server must:
the method, the path, the agent's token, the headers, the SHA-256 of the gzip bytes, and that they
gunzip to the JTL. It also answers the agent's register, info, heartbeat and poll calls, so that a
real ``octotui-agent`` process can run against it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.jtlfollow import JtlFollower
from agent.labels import LabelTable
from agent.link import ServerLink
from agent.records import ContainerRecords, Tracked, save_ended
from agent.settings import parse_settings
from agent.state import Identity
from agent.uploads import SPOOL, Uploader
from octotui.protocol import ContainerReport, ErrorCount, LabelStats
from tests.support.admin import create_provider
from tests.support.processes import AgentProcess
from tests.support.tinyproxy import Tinyproxy
from tests.support.waiting import wait_until, wait_until_async

AGENT_ID = "agent-up"
AGENT_TOKEN = "agent-token-up"
HEADER = "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,bytes\n"


class Peer(ThreadingHTTPServer):
    """A control server's stand-in: records every request; answers as its scripts say."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PeerHandler)
        self.lock = threading.Lock()
        #: Statuses to answer uploads with, per container, in order (then 204).
        self.upload_script: dict[str, list[int]] = {}
        #: The ``detail`` of a 404 answer to an upload.
        self.not_found_detail = "Not Found"
        #: One entry per upload received: what was checked.
        self.uploads: list[dict[str, Any]] = []
        self.heartbeats: list[dict[str, Any]] = []
        #: Answers to heartbeats, in order (then ``{"ok": true}``).
        self.beat_answers: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def uploads_of(self, container_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [u for u in self.uploads if u["container_id"] == container_id]


class PeerHandler(BaseHTTPRequestHandler):
    server: Peer
    protocol_version = "HTTP/1.1"

    def log_message(*args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/api/v1/agents/register":
            self._answer(200, {"agent_id": AGENT_ID, "agent_token": AGENT_TOKEN, "provider": "p",
                               "heartbeat_interval": 0.3, "poll_timeout": 1.0})  # fmt: skip
        elif self.path == f"/api/v1/agents/{AGENT_ID}/heartbeat":
            with self.server.lock:
                self.server.heartbeats.append(json.loads(body))
                answer = self.server.beat_answers.pop(0) if self.server.beat_answers else {"ok": True}
            self._answer(200, answer)
        else:  # acks
            self._answer(200, {"ok": True})

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/info"):
            self._answer(200, {"heartbeat_interval": 0.3, "offline_after": 30})
        elif self.path.startswith(f"/api/v1/agents/{AGENT_ID}/commands"):
            time.sleep(0.5)  # a short long poll
            self._answer(200, [])
        else:
            self._answer(404, {"detail": "Not Found"})

    def do_PUT(self) -> None:
        prefix, suffix = f"/api/v1/agents/{AGENT_ID}/containers/", "/jtl"
        if not (self.path.startswith(prefix) and self.path.endswith(suffix)):
            self._body()
            self._answer(404, {"detail": "Not Found"})
            return
        container_id = self.path[len(prefix) : -len(suffix)]
        # read and check as a server must, in chunks: the gzip bytes' hash, and what they gunzip to
        length = int(self.headers.get("Content-Length") or -1)
        packed_hash, plain_hash, unpacker = hashlib.sha256(), hashlib.sha256(), zlib.decompressobj(wbits=31)
        received = plain_size = 0
        while received < length:
            chunk = self.rfile.read(min(65536, length - received))
            if not chunk:
                break
            received += len(chunk)
            packed_hash.update(chunk)
            plain = unpacker.decompress(chunk)
            plain_hash.update(plain)
            plain_size += len(plain)
        with self.server.lock:
            script = self.server.upload_script.get(container_id) or []
            status = script.pop(0) if script else 204
            self.server.uploads.append({
                "container_id": container_id,
                "authorization": self.headers.get("Authorization"),
                "content_type": self.headers.get("Content-Type"),
                "transfer_encoding": self.headers.get("Transfer-Encoding"),
                "length": length, "received": received,
                "sha_ok": packed_hash.hexdigest() == self.headers.get("X-Checksum-Sha256"),
                "gzip_complete": unpacker.eof,
                "plain_sha256": plain_hash.hexdigest(), "plain_size": plain_size,
                "status": status,
            })  # fmt: skip
        if status == 204:
            self.send_response(204)
            self.end_headers()
        else:
            self._answer(status, {"detail": self.server.not_found_detail if status == 404 else f"status {status}"})


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def make_work(work_dir: Path, container_id: str, rows: int = 50) -> Path:
    """A container's work folder as a finished run leaves it: plan, JTL, JMeter log; the JTL's path."""
    (work_dir / container_id / "plan").mkdir(parents=True)
    (work_dir / container_id / "plan" / "plan.jmx").write_text("<jmeterTestPlan/>")
    results = work_dir / container_id / "results"
    results.mkdir()
    (results / "jmeter.log").write_text("log\n")
    jtl = results / "results.jtl"
    with jtl.open("w") as handle:
        handle.write(HEADER)
        for n in range(rows):
            handle.write(f"{1_700_000_000_000 + n},{n % 97},label {n % 7},200,OK,Users 1-1,text,true,,{n}\n")
    return jtl


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
async def link(peer: Peer) -> AsyncIterator[ServerLink]:
    settings = parse_settings(["--server", peer.url, "--state-dir", "/nonexistent"], env={})
    client = ServerLink(settings)
    yield client
    await client.aclose()


IDENTITY = Identity(agent_id=AGENT_ID, agent_token=AGENT_TOKEN, server="")


class Running:
    """An :class:`Uploader` running in a task (an agent's life: stop it as the agent stops)."""

    def __init__(self, uploader: Uploader) -> None:
        self.uploader = uploader
        self.task = asyncio.create_task(uploader.run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def uploader(link: ServerLink, tmp_path: Path, keep: bool = False) -> Uploader:
    return Uploader(link, lambda: IDENTITY, tmp_path / "work", tmp_path / "uploads.json", keep_results=keep,
                    retry_start=0.05, retry_cap=0.2)  # fmt: skip


async def outcome(up: Uploader, container_id: str, expected: str, within: float = 20.0) -> None:
    async def reached() -> bool:
        return up.outcomes.get(container_id) == expected

    await wait_until_async(reached, timeout=within, interval=0.02, what=f"{container_id} {expected}")


# --- the upload ----------------------------------------------------------------------------------


# The JTL goes up gzip-compressed and checksummed; the server's answer decides what stays.


async def test_a_stored_jtl_is_what_the_file_holds_and_its_folder_goes(
    peer: Peer, link: ServerLink, tmp_path: Path
) -> None:
    make_work(tmp_path / "work", "c1", rows=40_000)  # ~2 MB
    up = uploader(link, tmp_path)
    running = Running(up)
    try:
        await up.ended(["c1"])
        await outcome(up, "c1", "stored")
    finally:
        await running.stop()
    [got] = peer.uploads_of("c1")
    assert got["authorization"] == f"Bearer {AGENT_TOKEN}" and got["content_type"] == "application/gzip"
    assert got["sha_ok"] and got["gzip_complete"], "X-Checksum-Sha256 is the gzip bytes' hash; one gzip stream"
    assert got["length"] == got["received"] > 0 and got["transfer_encoding"] is None, "a known length"
    assert not (tmp_path / "work" / "c1").exists(), "plan and results removed once the server stored them"
    assert not any((tmp_path / "work" / SPOOL).iterdir()), "no compressed copy left behind"
    queue = json.loads((tmp_path / "uploads.json").read_text())
    assert queue == {"pending": [], "done": ["c1"]}


async def test_the_server_gets_the_exact_bytes(peer: Peer, link: ServerLink, tmp_path: Path) -> None:
    jtl = make_work(tmp_path / "work", "c1", rows=5000)
    expected, size = sha256_of(jtl), jtl.stat().st_size
    up = uploader(link, tmp_path, keep=True)
    running = Running(up)
    try:
        await up.ended(["c1"])
        await outcome(up, "c1", "stored")
    finally:
        await running.stop()
    [got] = peer.uploads_of("c1")
    assert (got["plain_sha256"], got["plain_size"]) == (expected, size)
    assert jtl.exists() and (tmp_path / "work" / "c1" / "plan" / "plan.jmx").exists(), "--keep-results"
    await up.ended(["c1"])  # reported ended again (an ended report goes out in several heartbeats)
    assert len(peer.uploads_of("c1")) == 1 and up.queue.items() == [], "sent once"


async def test_a_404_keeps_the_files_and_is_not_tried_again(peer: Peer, link: ServerLink, tmp_path: Path) -> None:
    """An older server without the route: nothing more is sent this start, the next start tries once."""
    make_work(tmp_path / "work", "c1")
    make_work(tmp_path / "work", "c2")
    peer.upload_script = {"c1": [404, 404]}
    up = uploader(link, tmp_path)
    running = Running(up)
    try:
        await up.ended(["c1", "c2"])
        await outcome(up, "c1", "later")
        await asyncio.sleep(1.0)  # a window 5 times the longest retry delay: no retry may come in it
    finally:
        await running.stop()
    assert [u["status"] for u in peer.uploads] == [404], "no retry, and c2 not tried against that server"
    assert (tmp_path / "work" / "c1" / "results" / "results.jtl").exists()
    assert (tmp_path / "work" / "c2" / "results" / "results.jtl").exists()
    again = uploader(link, tmp_path)  # the agent's next start: both still queued
    running = Running(again)
    try:
        await outcome(again, "c1", "later")
        await asyncio.sleep(1.0)
    finally:
        await running.stop()
    assert [u["status"] for u in peer.uploads] == [404, 404], "once per start"
    assert again.queue.items() == ["c1", "c2"]


async def test_a_404_for_one_container_lets_the_others_go(peer: Peer, link: ServerLink, tmp_path: Path) -> None:
    make_work(tmp_path / "work", "c1")
    make_work(tmp_path / "work", "c2")
    peer.upload_script, peer.not_found_detail = {"c1": [404]}, "unknown container c1"
    up = uploader(link, tmp_path)
    running = Running(up)
    try:
        await up.ended(["c1", "c2"])
        await outcome(up, "c2", "stored")
    finally:
        await running.stop()
    assert up.outcomes["c1"] == "kept" and [u["status"] for u in peer.uploads] == [404, 204]
    assert (tmp_path / "work" / "c1").exists() and not (tmp_path / "work" / "c2").exists()
    assert up.queue.items() == [], "a container the server does not know is not sent again"


@pytest.mark.parametrize("status", [403, 409, 413])
async def test_a_refusal_keeps_the_files_for_good(peer: Peer, link: ServerLink, tmp_path: Path, status: int) -> None:
    make_work(tmp_path / "work", "c1")
    peer.upload_script = {"c1": [status]}
    up = uploader(link, tmp_path)
    running = Running(up)
    try:
        await up.ended(["c1"])
        await outcome(up, "c1", "kept")
    finally:
        await running.stop()
    assert len(peer.uploads) == 1 and (tmp_path / "work" / "c1" / "results" / "results.jtl").exists()
    assert json.loads((tmp_path / "uploads.json").read_text()) == {"pending": [], "done": ["c1"]}


async def test_a_503_is_tried_again_then_the_files_go(peer: Peer, link: ServerLink, tmp_path: Path) -> None:
    make_work(tmp_path / "work", "c1")
    peer.upload_script = {"c1": [503, 503]}
    up = uploader(link, tmp_path)
    running = Running(up)
    try:
        await up.ended(["c1"])
        await outcome(up, "c1", "stored")
    finally:
        await running.stop()
    assert [u["status"] for u in peer.uploads] == [503, 503, 204]
    assert all(u["sha_ok"] for u in peer.uploads) and not (tmp_path / "work" / "c1").exists()


async def test_an_unreachable_server_is_tried_again(tmp_path: Path, peer: Peer) -> None:
    make_work(tmp_path / "work", "c1")
    port = peer.server_address[1]
    peer.shutdown()
    peer.server_close()  # nobody listens there now
    settings = parse_settings(["--server", f"http://127.0.0.1:{port}", "--state-dir", str(tmp_path)], env={})
    client = ServerLink(settings)
    up = uploader(client, tmp_path)
    running = Running(up)
    try:
        await up.ended(["c1"])
        await outcome(up, "c1", "retry")
    finally:
        await running.stop()
        await client.aclose()
    assert (tmp_path / "work" / "c1" / "results" / "results.jtl").exists()
    assert json.loads((tmp_path / "uploads.json").read_text())["pending"] == ["c1"], "kept for a restart"


async def test_the_upload_streams(peer: Peer, link: ServerLink, tmp_path: Path) -> None:
    """A 30 MB JTL goes up with a few MiB of Python memory at most (compressed and sent in chunks)."""
    jtl = make_work(tmp_path / "work", "c1", rows=600_000)
    size = jtl.stat().st_size
    assert size > 25_000_000
    up = uploader(link, tmp_path)
    tracemalloc.start()
    try:
        running = Running(up)
        try:
            await up.ended(["c1"])
            await outcome(up, "c1", "stored", within=60)
        finally:
            await running.stop()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [got] = peer.uploads_of("c1")
    assert got["plain_size"] == size and got["sha_ok"]
    assert peak < 6 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB of Python memory for a {size / 1e6:.0f} MB JTL"
    print(f"\n{size / 1e6:.1f} MB JTL -> {got['length'] / 1e6:.2f} MB gzip, peak {peak / 2**20:.2f} MiB")


# --- labels_wanted -------------------------------------------------------------------------------


def _table(labels: int = 3, buckets: int = 10) -> LabelTable:
    table = LabelTable()
    for index in range(labels):
        for ms in range(1, buckets + 1):
            table.add(f"l{index}", 1000, ms, ms != 1, code="500", message="boom")
    return table


# A server that lost a container's labels gets them all again, a report's bucket budget kept.


def test_resend_makes_every_label_and_error_pending_within_the_budget() -> None:
    table = _table()
    table.acknowledge(table.pending().mark)
    assert table.pending().labels == [], "all acknowledged"
    table.resend()
    seen: list[str] = []
    errors: list[str] = []
    for _ in range(5):
        report = table.pending(max_buckets=15)  # 10 buckets a label: one label per report
        assert len(report.labels) <= 1
        if not report.labels:
            break
        seen += [s.label for s in report.labels]
        errors += [e.label for e in report.errors]
        table.acknowledge(report.mark)
    assert seen == ["l0", "l1", "l2"] and errors == seen, "every label with its error counts, one per report"
    assert table.pending().labels == []


def test_a_failed_report_after_resend_loses_nothing() -> None:
    table = _table(2)
    table.acknowledge(table.pending().mark)
    table.resend()
    table.pending()  # lost
    report = table.pending()
    assert {s.label for s in report.labels} == {"l0", "l1"}


def test_an_ended_container_read_back_keeps_its_labels_after_delivery(tmp_path: Path) -> None:
    """Read back after a restart, its labels go out (bounded) and stay on disk once acknowledged."""
    stats = [LabelStats(label="a", samples=2, errors=1, sum_ms=30.0, min_ms=10.0, max_ms=20.0,
                        first_ts=1.0, last_ts=2.0, histogram={10: 1, 20: 1}),
             LabelStats(label="b", samples=1, sum_ms=5.0, min_ms=5.0, max_ms=5.0, first_ts=1.5, last_ts=1.505,
                            histogram={5: 1})]  # fmt: skip
    errors = [ErrorCount(label="a", code="404", message="Not Found", count=1)]
    report = ContainerReport(container_id="c1", test_id="t1", state="finished", labels=stats, errors=errors)
    save_ended(tmp_path / "containers.json", [report])
    records = ContainerRecords(tmp_path / "containers.json", tmp_path / "work")
    tracked = records.get("c1")
    assert tracked is not None
    marks: dict[str, int] = {}
    sent = tracked.report(marks)
    assert sent.labels == stats and sent.errors == errors, "figures as they were, exactly"
    records.delivered(["c1"], marks)
    assert tracked.report().labels == []
    records.save()  # saved after the acknowledgement: every label still on disk
    again = ContainerRecords(tmp_path / "containers.json").get("c1")
    assert again is not None and again.report().labels == stats
    assert records.resend_labels(["c1", "unknown"]) == ["c1"]
    assert tracked.report().labels == stats and tracked.report().errors == errors


def test_records_resend_a_followed_jtl(tmp_path: Path) -> None:
    work = tmp_path / "work"
    jtl = make_work(work, "c1", rows=20)
    records = ContainerRecords(None, work)
    tracked = Tracked("c1", "t1", None, "running", jtl=JtlFollower(jtl))
    records.by_id["c1"] = tracked
    tracked.jtl.read()  # type: ignore[union-attr]
    marks: dict[str, int] = {}
    first = tracked.report(marks)
    records.delivered(["c1"], marks)
    assert tracked.report().labels == []
    records.resend_labels(["c1"])
    assert tracked.report().labels == first.labels


# --- a real agent process -------------------------------------------------------------------------


def _ended_state(state_dir: Path, container_id: str) -> Path:
    """A state dir holding one finished container (with labels) and its work folder; the JTL's path."""
    jtl = make_work(state_dir / "work", container_id, rows=100)
    stats = [
        LabelStats(label="home", samples=3, sum_ms=30.0, min_ms=5.0, max_ms=20.0, histogram={5: 1, 10: 1, 15: 1}),
        LabelStats(label="api", samples=2, errors=2, sum_ms=8.0, min_ms=4.0, max_ms=4.0, histogram={4: 2}),
    ]
    errors = [ErrorCount(label="api", code="404", message="Not Found", count=2)]
    state_dir.mkdir(parents=True, exist_ok=True)
    save_ended(state_dir / "containers.json", [
        ContainerReport(container_id=container_id, test_id="t1", state="finished", labels=stats, errors=errors)
    ])  # fmt: skip
    return jtl


def _labels_in(beat: dict[str, Any], container_id: str) -> tuple[set[str], int] | None:
    for report in beat.get("containers", []):
        if report["container_id"] == container_id:
            labels = report.get("labels")
            return (None if labels is None else {s["label"] for s in labels}), len(report.get("errors") or [])  # type: ignore[return-value]
    return None


# The real ``octotui-agent`` against the peer: the heartbeat's answer drives both features.


def test_labels_wanted_makes_the_next_heartbeat_carry_every_label(peer: Peer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    _ended_state(state, "c1")
    peer.upload_script = {"c1": [409]}  # keep the files: this test is about labels
    # the first beat's answer acknowledges c1's labels; the second's says the server lost them
    peer.beat_answers = [{"ok": True}, {"ok": True, "labels_wanted": ["c1", "not-known"]}]
    agent = AgentProcess(peer.url, "provider-token", state).start()
    try:
        wait_until(lambda: len(peer.heartbeats) >= 3, timeout=30, what="three heartbeats")
    finally:
        agent.stop()
    with peer.lock:
        beats = [_labels_in(b, "c1") for b in peer.heartbeats[:3]]
    assert beats[0] == ({"home", "api"}, 1), "read back after the start: every label once"
    assert beats[1] == (set(), 0), "acknowledged: nothing changed, nothing sent"
    assert beats[2] == ({"home", "api"}, 1), f"every label and error count again: {beats}"
    assert "the server wants every label of c1 again" in agent.log()


def test_an_agent_restart_resumes_a_pending_upload(peer: Peer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    jtl = _ended_state(state, "c1")
    expected = sha256_of(jtl)
    peer.upload_script = {"c1": [503] * 1000}  # the server cannot store it while the first agent runs
    agent = AgentProcess(peer.url, "provider-token", state).start()
    try:
        wait_until(lambda: peer.uploads_of("c1"), timeout=30, what="a first upload")
    finally:
        agent.stop()
    assert jtl.exists()
    assert json.loads((state / "uploads.json").read_text())["pending"] == ["c1"]
    with peer.lock:
        peer.upload_script = {}
        tried = len(peer.uploads)
        peer.beat_answers = [{"ok": True, "stop": []}]
    agent.start()
    try:
        wait_until(lambda: not (state / "work" / "c1").exists(), timeout=30, what="the work folder removed")
    finally:
        agent.stop()
    stored = [u for u in peer.uploads_of("c1") if u["status"] == 204]
    assert len(stored) == 1 and stored[0]["plain_sha256"] == expected and stored[0]["sha_ok"]
    assert len(peer.uploads) > tried
    assert "JTL of container c1 stored by the server" in agent.log()


def test_keep_results_from_the_environment(peer: Peer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    jtl = _ended_state(state, "c1")
    agent = AgentProcess(peer.url, "provider-token", state).start(env={"OCTOTUI_KEEP_RESULTS": "1"})
    try:
        wait_until(lambda: "stored by the server" in agent.log(), timeout=30, what="the upload")
    finally:
        agent.stop()
    assert jtl.exists() and "work folder kept (--keep-results)" in agent.log()
    assert [u["status"] for u in peer.uploads_of("c1")] == [204]


def test_the_setting() -> None:
    base = ["--server", "http://127.0.0.1:1"]
    assert not parse_settings(base, env={}).keep_results
    assert parse_settings([*base, "--keep-results"], env={}).keep_results
    assert parse_settings(base, env={"OCTOTUI_KEEP_RESULTS": "true"}).keep_results
    assert not parse_settings(base, env={"OCTOTUI_KEEP_RESULTS": "0"}).keep_results


def test_gzip_of_the_spool_reads_back(tmp_path: Path) -> None:
    from agent.uploads import compress

    source = make_work(tmp_path, "c1", rows=3000)
    packed = compress(source, tmp_path / "out.gz")
    data = packed.path.read_bytes()
    assert gzip.decompress(data) == source.read_bytes() and hashlib.sha256(data).hexdigest() == packed.sha256
    assert packed.size == len(data)


def test_the_upload_goes_through_the_agents_proxy(peer: Peer, tinyproxy: Tinyproxy, tmp_path: Path) -> None:
    """``HTTP_PROXY`` carries the upload as it carries heartbeats: the peer gets it whole through tinyproxy."""
    state = tmp_path / "state"
    jtl = _ended_state(state, "c1")
    expected = sha256_of(jtl)
    agent = AgentProcess(peer.url, "provider-token", state).start(env=tinyproxy.env())
    try:
        wait_until(lambda: not (state / "work" / "c1").exists(), timeout=30, what="the JTL stored and removed")
    finally:
        agent.stop()
    [got] = peer.uploads_of("c1")
    assert got["sha_ok"] and got["plain_sha256"] == expected
    assert tinyproxy.requests(f"/api/v1/agents/{AGENT_ID}/containers/c1/jtl") == 1, tinyproxy.log()[-2000:]


# --- end to end: real server, real agent, real JMeter ----------------------------------------------

E2E_PLAN = Path(__file__).resolve().parent.parent / "examples" / "http-get.jmx"


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
def test_the_server_holds_the_jtl_and_the_agent_forgets_it(  # type: ignore[no-untyped-def]
    server, agents, docker_client, jmeter_image, http_target, tmp_path: Path
) -> None:
    """A short real run: once it ended, the merged JTL has every sample (and its header) and the
    agent's work folder for the container is gone."""
    api = server.client()
    provider = create_provider(api, "uploads")
    state = tmp_path / "gen"
    agents.append(AgentProcess(server.url, provider["token"], state, location="paris", name="gen").start())

    def online() -> bool:
        return any(
            a["status"] == "online" and (a.get("docker") or {}).get("available") for a in api.get("/agents").json()
        )

    wait_until(online, timeout=40, what="the agent online with Docker")
    created = api.post("/tests", json={
        "name": "jtl upload", "plan": E2E_PLAN.read_text(), "provider": provider["id"], "containers": 1,
        "image": jmeter_image, "users": 1, "duration": 4,
        "properties": {"host": "127.0.0.1", "port": str(http_target.port), "path": "/", "think_ms": "50"},
    })  # fmt: skip
    assert created.status_code == 201, created.text
    test_id, container_id = created.json()["id"], created.json()["containers"][0]["id"]
    folder = state / "work" / container_id
    wait_until(lambda: (folder / "results" / "results.jtl").exists(), timeout=90, what="the JTL written")

    def ended() -> dict[str, Any] | None:
        current = api.get(f"/tests/{test_id}").json()
        return current if current["state"] in ("finished", "failed", "stopped") else None

    final = wait_until(ended, timeout=120, interval=0.5, what="the test to end")
    assert final["state"] == "finished", final
    samples = final["results"]["samples"]
    assert samples > 0

    def exported() -> httpx.Response | None:
        answer = api.get(f"/tests/{test_id}/export/jtl")
        return answer if answer.status_code == 200 and not answer.headers.get("X-Octotui-Missing") else None

    merged = wait_until(exported, timeout=60, interval=0.5, what="the merged JTL with the container's rows")
    lines = merged.text.splitlines()
    assert len(lines) == samples + 1, f"{len(lines)} lines for {samples} samples"
    assert lines[0].startswith("timeStamp,"), lines[0]
    wait_until(lambda: not folder.exists(), timeout=30, what="the agent's work folder removed")
    assert f"JTL of container {container_id} stored by the server" in agents[0].log()
