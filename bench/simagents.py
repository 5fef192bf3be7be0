"""Simulated agents for the server benchmarks, in their own process: ``python -m bench.simagents``.

Each agent speaks the real agent protocol over raw asyncio streams (HTTP/1.1 written by hand,
keep-alive): it registers with the provider token, heartbeats every interval (first beat at a random
offset, then on a jittered cadence) with the latest host sample plus the earlier ones since its last
beat, as the real agent does, and keeps one long poll open. Launch commands it receives are
acknowledged and the container is reported ``running`` with live JMeter figures from then on, so a
server can be made to hold thousands of running containers without Docker.

httpx would saturate this process's core long before the server's (DESIGN.md, measured facts), so
nothing here allocates more than it must. Output: one JSON line per step on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PREFIX = "/api/v1"


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection; reopened after any failure."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def request(
        self, method: str, path: str, token: str, body: bytes = b"", limit: float = 30
    ) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            if self.writer is not None:
                self.reconnects += 1
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode() + body)
            return await asyncio.wait_for(self._response(), limit)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, HttpError):
            self.close()
            raise

    async def _response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value.strip())
            elif lname == b"transfer-encoding":
                raise HttpError("chunked answers are not expected")
            elif lname == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None


def _sample(ts: float) -> str:
    cpu = random.uniform(2, 30)
    return (
        f'{{"ts":{ts:.3f},"cpu_percent":{cpu:.1f},"cpu_per_core":[{cpu:.1f},{cpu * 0.9:.1f},{cpu * 1.1:.1f},{cpu:.1f},'
        f'{cpu:.1f},{cpu:.1f},{cpu:.1f},{cpu:.1f}],"memory_percent":{random.uniform(20, 40):.1f},'
        f'"memory_used":8000000000,"memory_total":34359738368,"swap_percent":0.0,"disk_percent":41.0,'
        f'"disk_read_bps":{random.uniform(0, 1e5):.0f},"disk_write_bps":{random.uniform(0, 1e5):.0f},'
        f'"net_sent_bps":{random.uniform(0, 1e6):.0f},"net_recv_bps":{random.uniform(0, 1e6):.0f},'
        f'"load1":0.5,"load5":0.4,"load15":0.3}}'
    )


@dataclass
class SimAgent:
    index: int
    agent_id: str = ""
    token: str = ""
    #: which of the swarm's servers (``--url a,b``) this agent talks to
    target: int = 0
    #: container id -> (test id, command id, started monotonic)
    containers: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    last_ts: float = 0.0

    def heartbeat_body(self, interval: float) -> bytes:
        now = time.time()
        # 1 s sampling: the earlier readings taken since the previous beat, then the latest.
        earlier = max(0, int(interval) - 1)
        samples = ",".join(_sample(now - k) for k in range(earlier, 0, -1))
        reports = []
        for cid, (tid, cmd, started) in self.containers.items():
            age = time.monotonic() - started
            n = int(age * 5)
            reports.append(
                f'{{"container_id":"{cid}","test_id":"{tid}","command_id":"{cmd}","docker_id":"{cid}",'
                f'"state":"running","cpu_percent":{random.uniform(1, 5):.1f},"memory_bytes":300000000,'
                f'"memory_limit":536870912,"figures":{{"samples":{n},"errors":0,"error_percent":0.0,'
                f'"rate":5.0,"avg_ms":{random.uniform(1, 3):.2f},"min_ms":0.5,"max_ms":12.0,"active":1,'
                f'"started":1,"finished":0,"interval_samples":{min(n, 25)},'
                f'"interval_avg_ms":1.5,"interval_errors":0}}}}'
            )
        body = (
            f'{{"host":{_sample(now)},"samples":[{samples}],"docker":{{"available":true,"version":"20.10.24"}},'
            f'"containers":[{",".join(reports)}],"complete":true}}'
        )
        return body.encode()


class Swarm:
    """Many simulated agents against one server, or split over several (agent i talks to server
    i mod n, replicas of one database: registration, heartbeats and long poll all on that one)."""

    def __init__(self, url: str, provider_token: str, interval: float) -> None:
        self.servers: list[tuple[str, int]] = []
        for one in url.split(","):
            parts = urlsplit(one.strip())
            self.servers.append((parts.hostname or "127.0.0.1", parts.port or 80))
        self.host, self.port = self.servers[0]
        self.provider_token = provider_token
        self.interval = interval
        self.agents: list[SimAgent] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.latencies: list[tuple[float, float, int]] = []  # (monotonic at send, seconds, server)
        self.errors = 0
        self.poll_answers = 0
        self.commands = 0
        self.lags: list[tuple[float, float]] = []
        self.conns: list[Conn] = []

    async def register(self, count: int, concurrency: int = 32) -> float:
        start = time.monotonic()
        first = len(self.agents)
        todo = list(range(first, first + count))

        async def worker() -> None:
            conns = [Conn(host, port) for host, port in self.servers]
            while todo:
                i = todo.pop()
                target = i % len(self.servers)
                conn = conns[target]
                body = json.dumps({
                    "name": f"sim-{i:05d}", "location": f"loc-{i % 10}", "cpu_count": 8,
                    "memory_total": 34359738368, "platform": "simulated",
                }).encode()  # fmt: skip
                for _attempt in range(5):
                    try:
                        status, answer = await conn.request(
                            "POST", f"{PREFIX}/agents/register", self.provider_token, body
                        )
                    except (OSError, asyncio.IncompleteReadError, TimeoutError, HttpError):
                        await asyncio.sleep(0.2)
                        continue
                    if status == 200:
                        data = json.loads(answer)
                        self.agents.append(SimAgent(i, data["agent_id"], data["agent_token"], target))
                        break
                    raise HttpError(f"register: {status} {answer[:200]!r}")
            for conn in conns:
                conn.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - start

    def start(self, agents: list[SimAgent]) -> None:
        for agent in agents:
            self.tasks.append(asyncio.create_task(self._beat(agent)))
            self.tasks.append(asyncio.create_task(self._poll(agent)))

    async def _beat(self, agent: SimAgent) -> None:
        conn = Conn(*self.servers[agent.target])
        self.conns.append(conn)
        path = f"{PREFIX}/agents/{agent.agent_id}/heartbeat"
        next_at = time.monotonic() + random.uniform(0, self.interval)
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            body = agent.heartbeat_body(self.interval)
            sent = time.monotonic()
            try:
                status, _ = await conn.request("POST", path, agent.token, body)
                if status != 200:
                    self.errors += 1
                else:
                    self.latencies.append((sent, time.monotonic() - sent, agent.target))
            except (OSError, asyncio.IncompleteReadError, TimeoutError, HttpError):
                self.errors += 1
            next_at += self.interval + random.uniform(-0.1, 0.1)
            if next_at < time.monotonic():
                next_at = time.monotonic()

    async def _poll(self, agent: SimAgent) -> None:
        conn = Conn(*self.servers[agent.target])
        self.conns.append(conn)
        fresh = "true"
        while True:
            wait = 25 * random.uniform(0.7, 1.0)
            path = f"{PREFIX}/agents/{agent.agent_id}/commands?timeout={wait:.1f}&fresh={fresh}"
            try:
                status, body = await conn.request("GET", path, agent.token, limit=wait + 30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, HttpError):
                self.errors += 1
                await asyncio.sleep(1)
                continue
            if status != 200:
                self.errors += 1
                await asyncio.sleep(1)
                continue
            fresh = "false"
            self.poll_answers += 1
            for cmd in json.loads(body) if body else []:
                self.commands += 1
                if cmd["kind"] == "launch":
                    agent.containers[cmd["container_id"]] = (cmd["test_id"], cmd["id"], time.monotonic())
                else:
                    agent.containers.pop(cmd["container_id"], None)
                ack = f"{PREFIX}/agents/{agent.agent_id}/commands/{cmd['id']}/ack"
                with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError, HttpError):
                    await conn.request("POST", ack, agent.token, b'{"ok":true}')

    async def watch_lag(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.1)
            self.lags.append((before, time.monotonic() - before - 0.1))

    def window(self, start: float, end: float) -> dict[str, object]:
        lat = sorted(v * 1000 for t, v, _ in self.latencies if start <= t < end)
        lags = sorted(v * 1000 for t, v in self.lags if start <= t < end)

        def pct(values: list[float], p: float) -> float:
            return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")

        per_server = []
        for k in range(len(self.servers)):
            mine = sorted(v * 1000 for t, v, at in self.latencies if start <= t < end and at == k)
            per_server.append({"heartbeats": len(mine), "p50_ms": pct(mine, 50), "p99_ms": pct(mine, 99)})
        return {
            "heartbeats": len(lat), "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99),
            "max_ms": lat[-1] if lat else float("nan"), "client_lag_p99_ms": pct(lags, 99),
            "per_server": per_server,
        }  # fmt: skip

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for conn in self.conns:
            conn.close()


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


def emit(**data: object) -> None:
    print(json.dumps(data), flush=True)


async def main_async(args: argparse.Namespace) -> None:
    steps = [int(s) for s in args.steps.split(",")]
    _raise_nofile(2 * max(steps) + 200)
    swarm = Swarm(args.url, args.token, args.interval)
    lag = asyncio.create_task(swarm.watch_lag())
    deadline = time.monotonic() + args.max_seconds
    try:
        for n in steps:
            before = len(swarm.agents)
            took = await swarm.register(n - before)
            swarm.start(swarm.agents[before:])
            emit(event="registered", agents=len(swarm.agents), register_s=round(took, 2))
            await asyncio.sleep(args.warmup)
            start = time.monotonic()
            errors0, reconnects0 = swarm.errors, sum(c.reconnects for c in swarm.conns)
            if args.hold:
                emit(event="ready", agents=len(swarm.agents), t0=start)
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
                break
            await asyncio.sleep(min(args.window, max(0.0, deadline - time.monotonic())))
            end = time.monotonic()
            emit(
                event="step", agents=len(swarm.agents), wanted=n, t0=start, t1=end, errors=swarm.errors - errors0,
                reconnects=sum(c.reconnects for c in swarm.conns) - reconnects0, **swarm.window(start, end),
            )  # fmt: skip
            if time.monotonic() >= deadline:
                break
    finally:
        lag.cancel()
        await swarm.stop()
        emit(event="done", commands=swarm.commands, poll_answers=swarm.poll_answers)


def main() -> None:
    parser = argparse.ArgumentParser(description="simulated octotui agents (benchmarks only; loopback servers)")
    parser.add_argument("--url", required=True, help="a server, or several (comma-separated): agents split over them")
    parser.add_argument("--token", required=True, help="provider token")
    parser.add_argument("--steps", default="1000", help="agent counts, e.g. 1000,2500,5000")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--hold", action="store_true", help="after the first step, run until --max-seconds")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="hard bound on the whole run")
    args = parser.parse_args()
    for one in args.url.split(","):
        host = urlsplit(one.strip()).hostname or ""
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            parser.error("loopback servers only")
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(main_async(args))


if __name__ == "__main__":
    main()
