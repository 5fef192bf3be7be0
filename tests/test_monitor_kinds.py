"""Each kind of monitor against the real program it watches (node exporter, nginx, sshd, PostgreSQL),
and the clear error of each failure: refused, wrong password, malformed page, huge page, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import pytest

from agent.monitors.base import MAX_BODY, CollectError, Collector
from agent.monitors.scheduler import collect_once, make_collector
from octotui.protocol.monitors import MonitorAssignment, MonitorCredentials
from tests.support.peers import HUGE_BYTES, Nginx, Sshd
from tests.support.postgres import Cluster
from tests.support.processes import free_port


def assignment(kind: str, target: str, **extra: Any) -> MonitorAssignment:
    return MonitorAssignment(id=f"m-{kind}", kind=kind, target=target, interval=5, timeout=5, **extra)


async def failure(collector: Collector) -> str:
    """The error a collection gives, in the words the report carries."""
    outcome = await collect_once(collector)
    await collector.aclose()
    assert isinstance(outcome, str), outcome
    return outcome


# --- Prometheus ---
# Scraped from prometheus-node-exporter: names, label selectors, counters as rates.


async def test_selected_series_and_counter_rates(node_exporter: str) -> None:
    chosen = ["node_load1", 'node_cpu_seconds_total{mode="idle"}', "node_memory_MemAvailable_bytes"]
    collector = make_collector(assignment("prometheus", node_exporter, metrics=chosen))
    first = await collector.collect()
    assert set(first) == {"node_load1", "node_memory_MemAvailable_bytes"}  # a counter needs two scrapes
    assert first["node_memory_MemAvailable_bytes"] > 0
    second = await collector.collect()
    idle = {k: v for k, v in second.items() if k.startswith("node_cpu_seconds_total")}
    assert 'node_cpu_seconds_total{cpu="0",mode="idle"}' in idle
    assert all(0 <= v <= 1.5 for v in idle.values()), idle  # seconds idle per second, per CPU
    assert collector.dropped > 300  # the page's other series, counted not kept


async def test_every_metric_up_to_the_limit(node_exporter: str) -> None:
    collector = make_collector(assignment("prometheus", node_exporter))
    values = await collector.collect()
    assert 0 < len(values) <= 200 and collector.dropped > 0


async def test_small_page_counter_and_gauge(nginx_peer: Nginx) -> None:
    url = f"{nginx_peer.url}/metrics.txt"
    chosen = ["demo_requests_total", "demo_temperature"]
    collector = make_collector(assignment("prometheus", url, metrics=chosen))
    assert await collector.collect() == {"demo_temperature": 21.5}
    again = await collector.collect()  # the file does not change: the counters' rate is 0
    assert again == {"demo_temperature": 21.5, 'demo_requests_total{code="200"}': 0.0,
                     'demo_requests_total{code="500"}': 0.0}  # fmt: skip


async def test_a_page_that_is_not_prometheus_text(nginx_peer: Nginx) -> None:
    for metrics in ([], ["node_load1"]):
        collector = make_collector(assignment("prometheus", f"{nginx_peer.url}/html", metrics=metrics))
        assert (await failure(collector)).startswith("malformed: not Prometheus text")


async def test_a_huge_page_is_refused(nginx_peer: Nginx) -> None:
    assert HUGE_BYTES > MAX_BODY
    collector = make_collector(assignment("prometheus", f"{nginx_peer.url}/huge"))
    assert await failure(collector) == f"too large: over {MAX_BODY} bytes"


async def test_bad_selector_and_bad_target() -> None:
    with pytest.raises(CollectError, match="bad metric selector"):
        make_collector(assignment("prometheus", "http://127.0.0.1:9/", metrics=['x{a="b"']))
    collector = make_collector(assignment("prometheus", "ftp://127.0.0.1/"))
    assert (await failure(collector)).startswith("bad target")


# --- HttpAndStatusPages ---
# http probes and nginx's stub_status, from the real nginx.


async def test_nginx_stub_status(nginx_peer: Nginx) -> None:
    collector = make_collector(assignment("nginx", f"{nginx_peer.url}/status"))
    first = await collector.collect()
    assert first["active"] >= 1 and set(first) == {"active", "reading", "writing", "waiting"}
    second = await collector.collect()
    assert second["requests_per_s"] > 0 and second["accepts_per_s"] >= 0 and "handled_per_s" in second


async def test_nginx_page_that_is_not_stub_status(nginx_peer: Nginx) -> None:
    collector = make_collector(assignment("nginx", f"{nginx_peer.url}/html"))
    assert await failure(collector) == "malformed: not an nginx stub_status page"


async def test_https_probe_reads_expiry_and_matches(nginx_peer: Nginx) -> None:
    url = f"{nginx_peer.tls_url}/metrics.txt"
    collector = make_collector(assignment("http", url, insecure=True, match=r"demo_temperature \d+"))
    values = await collector.collect()
    assert values["status"] == 200 and values["match"] == 1 and values["latency_ms"] > 0
    assert 0 < values["cert_days"] <= 1.01  # tlskit signs for one day
    missing = make_collector(assignment("http", f"{nginx_peer.url}/nope", match="never"))
    assert (await missing.collect())["status"] == 404  # an answer is a sample, not a failure


async def test_untrusted_certificate(nginx_peer: Nginx) -> None:
    collector = make_collector(assignment("http", f"{nginx_peer.tls_url}/metrics.txt"))
    assert (await failure(collector)).startswith("tls: certificate not trusted")


async def test_refused() -> None:
    for kind in ("http", "prometheus", "nginx"):
        collector = make_collector(assignment(kind, f"http://127.0.0.1:{free_port()}/"))
        assert await failure(collector) == "unreachable: connection refused"


@pytest.fixture
def pg_reader(postgres: Cluster) -> tuple[str, str, str]:
    """A database and a login role in the run's PostgreSQL granted only pg_monitor: (target, user, password)."""
    database = postgres.create_database()
    user, password = f"mon_{secrets.token_hex(4)}", secrets.token_hex(8)
    postgres.create_role(user, password)
    postgres.execute(f'GRANT pg_monitor TO "{user}"')
    return f"127.0.0.1:{postgres.port}/{database}", user, password


# --- Postgresql ---
# From the run's real PostgreSQL, with a role that can only read statistics.


async def test_statistics_with_a_monitoring_role(pg_reader: tuple[str, str, str]) -> None:
    target, user, password = pg_reader
    creds = MonitorCredentials(username=user, password=password)
    collector = make_collector(assignment("postgresql", target, credentials=creds))
    first = await collector.collect()
    assert first["connections"] >= 1 and first["max_connections"] > 0 and first["locks"] >= 1
    second = await collector.collect()
    assert second["xact_commit_per_s"] >= 0  # PostgreSQL flushes its counters at most once a second
    assert 0 <= second.get("cache_hit_ratio", 100) <= 100 and second["deadlocks_per_s"] == 0
    assert collector.version and collector.version[0].isdigit()
    await collector.aclose()


async def test_wrong_password_and_refused(pg_reader: tuple[str, str, str]) -> None:
    target, user, _ = pg_reader
    creds = MonitorCredentials(username=user, password="wrong")
    assert await failure(make_collector(assignment("postgresql", target, credentials=creds))) == (
        "authentication failed"
    )
    refused = make_collector(assignment("postgresql", f"127.0.0.1:{free_port()}/x", credentials=creds))
    assert await failure(refused) == "unreachable: connection refused"


# --- LinuxSsh ---
# From a second real sshd, with a key and with a password, over one kept connection.


async def test_key_one_connection_kept(sshd_peer: Sshd) -> None:
    creds = MonitorCredentials(username=sshd_peer.user, private_key=sshd_peer.private_key)
    collector: Any = make_collector(assignment("linux-ssh", f"127.0.0.1:{sshd_peer.port}", credentials=creds))
    first = await collector.collect()
    assert {"load1", "load5", "load15", "memory_percent", "disk_percent"} <= set(first)
    conn = collector.conn
    # CPU is the busy share between two readings of /proc/stat, which moves in 10 ms ticks: two
    # collections inside one tick (a loaded machine) give none yet. Bounded: a few collections.
    for _ in range(5):
        second = await collector.collect()
        assert collector.conn is conn  # the same connection, not one per collection
        if "cpu_percent" in second:
            break
        await asyncio.sleep(0.05)
    assert 0 <= second["cpu_percent"] <= 100 and 0 < second["memory_percent"] < 100
    assert second["net_rx_bytes_per_s"] >= 0 and "OpenSSH" in (collector.version or "")
    await collector.aclose()


async def test_password_and_wrong_password(sshd_peer: Sshd) -> None:
    target = f"127.0.0.1:{sshd_peer.port}"
    good = MonitorCredentials(username=sshd_peer.user, password=sshd_peer.password)
    collector = make_collector(assignment("linux-ssh", target, credentials=good))
    assert "load1" in await collector.collect()
    await collector.aclose()
    bad = MonitorCredentials(username=sshd_peer.user, password="not-the-password")
    assert await failure(make_collector(assignment("linux-ssh", target, credentials=bad))) == ("authentication failed")


async def test_refused_and_missing_credentials() -> None:
    creds = MonitorCredentials(username="u", password="p")
    refused = make_collector(assignment("linux-ssh", f"127.0.0.1:{free_port()}", credentials=creds))
    assert await failure(refused) == "unreachable: connection refused"
    bare = make_collector(assignment("linux-ssh", "127.0.0.1:22"))
    assert (await failure(bare)).startswith("credentials needed")


async def test_apache_status_page(nginx_peer: Nginx) -> None:
    """apache2 is not installed: its recorded mod_status ``?auto`` page, served by the real nginx."""
    collector = make_collector(assignment("apache", f"{nginx_peer.url}/server-status"))
    values = await collector.collect()
    assert values["busy_workers"] == 2 and values["idle_workers"] == 48 and values["load1"] == 0.12
    assert collector.version == "Apache/2.4.62 (Debian)"
    assert (await collector.collect())["requests_per_s"] == 0.0  # the same totals: no request since
    stub = make_collector(assignment("apache", f"{nginx_peer.url}/status"))
    assert await failure(stub) == "malformed: not an apache mod_status ?auto page"


async def test_changed_host_key_is_refused(sshd_peer: Sshd) -> None:
    """Accept-new: the first host key is trusted; another one later refuses the host."""
    creds = MonitorCredentials(username=sshd_peer.user, private_key=sshd_peer.private_key)
    collector: Any = make_collector(assignment("linux-ssh", f"127.0.0.1:{sshd_peer.port}", credentials=creds))
    await collector.collect()
    assert collector.host_key
    collector.host_key = b"another host's key"  # as if the target's key had changed meanwhile
    await collector.reset()
    assert (await failure(collector)).startswith("host key changed")


async def test_chunked_huge_page_and_garbage_answers() -> None:
    """A page sent chunked is bounded as it arrives; an answer that is not HTTP says so."""
    answers = {
        b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (65536, b"a" * 65536) for _ in range(MAX_BODY // 65536 + 2))
        + b"0\r\n\r\n",
        b"/garbage": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    }

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1]
        writer.write(answers[path])
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    peer = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = peer.sockets[0].getsockname()[1]
    try:
        chunked = make_collector(assignment("prometheus", f"http://127.0.0.1:{port}/chunked"))
        assert await failure(chunked) == f"too large: over {MAX_BODY} bytes"
        garbage = make_collector(assignment("nginx", f"http://127.0.0.1:{port}/garbage"))
        assert (await failure(garbage)).startswith("malformed: not an HTTP")
    finally:
        peer.close()
