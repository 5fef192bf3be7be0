"""Each kind of monitor against the real program it watches (node exporter, nginx, sshd, PostgreSQL),
and the clear error of each failure: refused, wrong password, malformed page, huge page, TLS."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.monitors.base import MAX_BODY, CollectError, Collector, HttpClients
from agent.monitors.scheduler import collect_once, make_collector
from octotui.protocol.monitors import MonitorAssignment, MonitorCredentials
from tests.support.peers import HUGE_BYTES, Nginx, Sshd
from tests.support.postgres import Cluster
from tests.support.processes import free_port


def assignment(kind: str, target: str, **extra: Any) -> MonitorAssignment:
    return MonitorAssignment(id=f"m-{kind}", kind=kind, target=target, interval=5, timeout=5, **extra)


@pytest.fixture
async def http() -> AsyncIterator[HttpClients]:
    clients = HttpClients()
    yield clients
    await clients.aclose()


async def failure(collector: Collector) -> str:
    """The error a collection gives, in the words the report carries."""
    outcome = await collect_once(collector)
    await collector.aclose()
    assert isinstance(outcome, str), outcome
    return outcome


# --- Prometheus ---
# Scraped from prometheus-node-exporter: names, label selectors, counters as rates.


async def test_selected_series_and_counter_rates(node_exporter: str, http: HttpClients) -> None:
    chosen = ["node_load1", 'node_cpu_seconds_total{mode="idle"}', "node_memory_MemAvailable_bytes"]
    collector = make_collector(assignment("prometheus", node_exporter, metrics=chosen), http)
    first = await collector.collect()
    assert set(first) == {"node_load1", "node_memory_MemAvailable_bytes"}  # a counter needs two scrapes
    assert first["node_memory_MemAvailable_bytes"] > 0
    second = await collector.collect()
    idle = {k: v for k, v in second.items() if k.startswith("node_cpu_seconds_total")}
    assert 'node_cpu_seconds_total{cpu="0",mode="idle"}' in idle
    assert all(0 <= v <= 1.5 for v in idle.values()), idle  # seconds idle per second, per CPU
    assert collector.dropped > 300  # the page's other series, counted not kept


async def test_every_metric_up_to_the_limit(node_exporter: str, http: HttpClients) -> None:
    collector = make_collector(assignment("prometheus", node_exporter), http)
    values = await collector.collect()
    assert 0 < len(values) <= 200 and collector.dropped > 0


async def test_small_page_counter_and_gauge(nginx_peer: Nginx, http: HttpClients) -> None:
    url = f"{nginx_peer.url}/metrics.txt"
    collector = make_collector(assignment("prometheus", url, metrics=["demo_requests_total", "demo_temperature"]),
                               http)  # fmt: skip
    assert await collector.collect() == {"demo_temperature": 21.5}
    again = await collector.collect()  # the file does not change: the counters' rate is 0
    assert again == {"demo_temperature": 21.5, 'demo_requests_total{code="200"}': 0.0,
                     'demo_requests_total{code="500"}': 0.0}  # fmt: skip


async def test_a_page_that_is_not_prometheus_text(nginx_peer: Nginx, http: HttpClients) -> None:
    for metrics in ([], ["node_load1"]):
        collector = make_collector(assignment("prometheus", f"{nginx_peer.url}/html", metrics=metrics), http)
        assert (await failure(collector)).startswith("malformed: not Prometheus text")


async def test_a_huge_page_is_refused(nginx_peer: Nginx, http: HttpClients) -> None:
    assert HUGE_BYTES > MAX_BODY
    collector = make_collector(assignment("prometheus", f"{nginx_peer.url}/huge"), http)
    assert await failure(collector) == f"too large: over {MAX_BODY} bytes"


async def test_bad_selector_and_bad_target(http: HttpClients) -> None:
    with pytest.raises(CollectError, match="bad metric selector"):
        make_collector(assignment("prometheus", "http://127.0.0.1:9/", metrics=['x{a="b"']), http)
    collector = make_collector(assignment("prometheus", "ftp://127.0.0.1/"), http)
    assert (await failure(collector)).startswith("bad target")


# --- HttpAndStatusPages ---
# http probes and nginx's stub_status, from the real nginx.


async def test_nginx_stub_status(nginx_peer: Nginx, http: HttpClients) -> None:
    collector = make_collector(assignment("nginx", f"{nginx_peer.url}/status"), http)
    first = await collector.collect()
    assert first["active"] >= 1 and set(first) == {"active", "reading", "writing", "waiting"}
    second = await collector.collect()
    assert second["requests_per_s"] > 0 and second["accepts_per_s"] >= 0 and "handled_per_s" in second


async def test_nginx_page_that_is_not_stub_status(nginx_peer: Nginx, http: HttpClients) -> None:
    collector = make_collector(assignment("nginx", f"{nginx_peer.url}/html"), http)
    assert await failure(collector) == "malformed: not an nginx stub_status page"


async def test_https_probe_reads_expiry_and_matches(nginx_peer: Nginx, http: HttpClients) -> None:
    url = f"{nginx_peer.tls_url}/metrics.txt"
    collector = make_collector(assignment("http", url, insecure=True, match=r"demo_temperature \d+"), http)
    values = await collector.collect()
    assert values["status"] == 200 and values["match"] == 1 and values["latency_ms"] > 0
    assert 0 < values["cert_days"] <= 1.01  # tlskit signs for one day
    missing = make_collector(assignment("http", f"{nginx_peer.url}/nope", match="never"), http)
    assert (await missing.collect())["status"] == 404  # an answer is a sample, not a failure


async def test_untrusted_certificate(nginx_peer: Nginx, http: HttpClients) -> None:
    collector = make_collector(assignment("http", f"{nginx_peer.tls_url}/metrics.txt"), http)
    assert (await failure(collector)).startswith("tls: certificate not trusted")


async def test_refused(http: HttpClients) -> None:
    for kind in ("http", "prometheus", "nginx"):
        collector = make_collector(assignment(kind, f"http://127.0.0.1:{free_port()}/"), http)
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


async def test_statistics_with_a_monitoring_role(pg_reader: tuple[str, str, str], http: HttpClients) -> None:
    target, user, password = pg_reader
    creds = MonitorCredentials(username=user, password=password)
    collector = make_collector(assignment("postgresql", target, credentials=creds), http)
    first = await collector.collect()
    assert first["connections"] >= 1 and first["max_connections"] > 0 and first["locks"] >= 1
    second = await collector.collect()
    assert second["xact_commit_per_s"] >= 0  # PostgreSQL flushes its counters at most once a second
    assert 0 <= second.get("cache_hit_ratio", 100) <= 100 and second["deadlocks_per_s"] == 0
    assert collector.version and collector.version[0].isdigit()
    await collector.aclose()


async def test_wrong_password_and_refused(pg_reader: tuple[str, str, str], http: HttpClients) -> None:
    target, user, _ = pg_reader
    creds = MonitorCredentials(username=user, password="wrong")
    assert await failure(make_collector(assignment("postgresql", target, credentials=creds), http)) == (
        "authentication failed"
    )
    refused = make_collector(assignment("postgresql", f"127.0.0.1:{free_port()}/x", credentials=creds), http)
    assert await failure(refused) == "unreachable: connection refused"


# --- LinuxSsh ---
# From a second real sshd, with a key and with a password, over one kept connection.


async def test_key_one_connection_kept(sshd_peer: Sshd, http: HttpClients) -> None:
    creds = MonitorCredentials(username=sshd_peer.user, private_key=sshd_peer.private_key)
    collector: Any = make_collector(assignment("linux-ssh", f"127.0.0.1:{sshd_peer.port}", credentials=creds), http)
    first = await collector.collect()
    assert {"load1", "load5", "load15", "memory_percent", "disk_percent"} <= set(first)
    conn = collector.conn
    second = await collector.collect()
    assert collector.conn is conn  # the same connection, not one per collection
    assert 0 <= second["cpu_percent"] <= 100 and 0 < second["memory_percent"] < 100
    assert second["net_rx_bytes_per_s"] >= 0 and "OpenSSH" in (collector.version or "")
    await collector.aclose()


async def test_password_and_wrong_password(sshd_peer: Sshd, http: HttpClients) -> None:
    target = f"127.0.0.1:{sshd_peer.port}"
    good = MonitorCredentials(username=sshd_peer.user, password=sshd_peer.password)
    collector = make_collector(assignment("linux-ssh", target, credentials=good), http)
    assert "load1" in await collector.collect()
    await collector.aclose()
    bad = MonitorCredentials(username=sshd_peer.user, password="not-the-password")
    assert await failure(make_collector(assignment("linux-ssh", target, credentials=bad), http)) == (
        "authentication failed"
    )


async def test_refused_and_missing_credentials(http: HttpClients) -> None:
    creds = MonitorCredentials(username="u", password="p")
    refused = make_collector(assignment("linux-ssh", f"127.0.0.1:{free_port()}", credentials=creds), http)
    assert await failure(refused) == "unreachable: connection refused"
    bare = make_collector(assignment("linux-ssh", "127.0.0.1:22"), http)
    assert (await failure(bare)).startswith("credentials needed")
