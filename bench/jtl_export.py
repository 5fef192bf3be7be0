"""Figure: the merged JTL of a 1,000,000-sample test, exported by a real server process (issue 12, part 5).

Run alone: ``python -m bench.jtl_export [--runs 3] [--rows 500000]``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import Metric, Result
from tests.support.processes import ServerProcess
from tests.support.wire import PLAN, bearer

TITLE = "merged JTL export of a 1,000,000-sample test"
TARGET = ">= 50 MB/s, server RSS + < 20 MB"
CONTAINERS = 2
ROWS = 500_000
HEADER = (
    b"timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,bytes,"
    b"sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect\n"
)
METHOD = f"""a real `octotui server` process on loopback; {CONTAINERS} wire-level agents each run one
container of one test, which ends; each uploads its container's JTL ({ROWS:,} rows of JMeter's
17 default CSV columns, ~120 bytes a row, gzip level 6) with PUT .../containers/{{id}}/jtl. Timed:
GET /tests/{{id}}/export/jtl read by a streaming httpx client, from the request to the last byte
(MB/s = bytes received / s). The server's RSS (/proc/PID/status VmRSS) is read every 10 ms during
the export: growth = peak - RSS just before the request."""


def _rows(container: int, rows: int) -> bytes:
    out = bytearray(HEADER)
    for i in range(rows):
        ts = 1_700_000_000_000 + i * 3
        ok = b"true" if i % 50 else b"false"
        out += b"%d,%d,label-%d,200,OK,gen-%d 1-%d,text,%s,,%d,150,10,20,http://target/p/%d,%d,0,1\n" % (
            ts, 20 + i % 180, i % 50, container, 1 + i % 10, ok, 1000 + i % 900, i % 50, 10 + i % 30,
        )  # fmt: skip
    return bytes(out)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _world(api: httpx.Client, files: list[bytes]) -> str:
    """An ended test of ``len(files)`` containers, each container's JTL uploaded; its id."""
    token = api.post("/providers", json={"name": "bench"}).json()["token"]
    host = {"ts": time.time(), "cpu_percent": 5.0, "memory_percent": 20.0, "memory_total": 64 * 1024**3}
    agents = []
    for i in range(len(files)):
        r = api.post("/agents/register", json={"name": f"gen-{i}", "location": "lab"}, headers=bearer(token))
        agent = (r.json()["agent_id"], r.json()["agent_token"])
        api.post(f"/agents/{agent[0]}/heartbeat", json={"host": host, "docker": {"available": True}},
                 headers=bearer(agent[1])).raise_for_status()  # fmt: skip
        agents.append(agent)
    test = api.post("/tests", json={"name": "bench", "plan": PLAN, "provider": "bench", "containers": len(files)})
    test.raise_for_status()
    test_id = test.json()["id"]
    for (agent_id, agent_token), body in zip(agents, files, strict=True):
        (cmd,) = api.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=bearer(agent_token)).json()
        report = {"container_id": cmd["container_id"], "test_id": test_id, "state": "finished", "exit_code": 0}
        api.post(f"/agents/{agent_id}/heartbeat", json={"host": host, "containers": [report]},
                 headers=bearer(agent_token)).raise_for_status()  # fmt: skip
        r = api.put(
            f"/agents/{agent_id}/containers/{cmd['container_id']}/jtl", content=body,
            headers={**bearer(agent_token), "X-Checksum-Sha256": hashlib.sha256(body).hexdigest(),
                     "Content-Type": "application/octet-stream"},
            timeout=120,
        )  # fmt: skip
        assert r.status_code == 204, r.text
    return str(test_id)


def _export(server: ServerProcess, test_id: str) -> tuple[float, float, int]:
    """(MB/s, RSS growth in MB, bytes) of one export."""
    assert server.proc is not None
    pid = server.proc.pid
    base = _rss_kib(pid)
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_kib(pid))
            done.wait(0.01)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    size = 0
    started = time.perf_counter()
    with (
        httpx.Client(base_url=server.url + "/api/v1", headers=bearer(server.admin_token), timeout=120) as api,
        api.stream("GET", f"/tests/{test_id}/export/jtl") as r,
    ):
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw(1024 * 1024):
            size += len(chunk)
    took = time.perf_counter() - started
    done.set()
    watcher.join()
    return size / took / 1e6, (peak - base) / 1024, size


def measure(rows: int = ROWS, runs: int = 3) -> dict[str, Any]:
    files = [gzip.compress(_rows(i, rows), compresslevel=6) for i in range(CONTAINERS)]
    with tempfile.TemporaryDirectory(prefix="octotui-bench-") as tmp:
        server = ServerProcess(Path(tmp) / "server", "--log-level", "warning").start()
        try:
            with server.client() as api:
                test_id = _world(api, files)
            got = [_export(server, test_id) for _ in range(runs)]
        finally:
            server.stop()
    return {"rates": [g[0] for g in got], "growth": [g[1] for g in got], "bytes": got[0][2],
            "gzip": sum(len(f) for f in files)}  # fmt: skip


def run(runs: int = 3, quick: bool = False) -> Result:
    rows = ROWS // 10 if quick else ROWS
    got = measure(rows, runs)
    metrics = [
        Metric("merged JTL export", "MB/s", got["rates"], 50.0, ">"),
        Metric("server RSS growth during the export", "MB", got["growth"], 20.0),
    ]
    details = [
        f"{CONTAINERS} x {rows:,} rows: {got['bytes'] / 1e6:.1f} MB merged, {got['gzip'] / 1e6:.1f} MB stored (gzip)"
    ]
    return Result("jtl_export", TITLE, TARGET, METHOD, metrics, details)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=ROWS, help="rows per container")
    args = parser.parse_args()
    got = measure(args.rows, args.runs)
    print(f"{CONTAINERS} x {args.rows:,} rows: {got['bytes']:,} bytes merged, {got['gzip']:,} stored")
    for rate, growth in zip(got["rates"], got["growth"], strict=True):
        print(f"export {rate:.1f} MB/s, server RSS +{growth:.1f} MB")


if __name__ == "__main__":
    main()
