"""Figure (issue 14): what per-label figures cost the replicas' live exchange: 16 containers x 200
labels, each label's cumulative figures with a histogram of a realistic spread, every label changed
(``octotui/server/replica/live.py``: one publication a second per replica).

Run alone: ``python -m bench.replica_labels [--runs 3] [--no-save]``.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from bench.common import Metric, Result, repeat, standalone
from octotui.protocol import LabelStats, rt_bucket
from octotui.server.domain.state import ServerState
from octotui.server.labelbook import LabelBook
from octotui.server.records import ContainerRec
from octotui.server.replica import live
from octotui.server.replica.reader import Reader
from octotui.server.settings import ServerSettings
from octotui.server.store import Store

TITLE = "Replicas: per-label figures in the live exchange (16 containers x 200 labels)"
TARGET = "bounded and stated; off the event loop"
METHOD = (
    "In process, no database: 16 containers of 200 labels, each label 3,000 samples of a log-normal spread"
    " (median 55 ms, sigma 0.6: ~220 histogram buckets), every label changed since the last publication;"
    " one replica's gather (event loop), encode (reader's thread: labels as numbers, zlib level 1), the"
    " other's decode (thread) and take (event loop), timed with perf_counter; bytes of the stored row."
    " Per second at 5 s heartbeats: a fifth of the labels change each second."
)
CONTAINERS, LABELS, SAMPLES, HEARTBEAT_S = 16, 200, 3000, 5.0


def _replica(tmp: Path, name: str) -> live.Live:
    s = ServerState(ServerSettings(data_dir=tmp / name), Store(tmp / name / "octotui.db"))
    for c in range(CONTAINERS):
        s.containers[f"c{c}"] = ContainerRec(f"c{c}", "t1", "g1", c, "running", 4445 + c)
    return live.Live(s, Reader(tmp / name / "r.db"), name)


def measure() -> dict[str, float]:
    rnd = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="octotui-bench-replica-labels-") as tmp:
        a, b = _replica(Path(tmp), "a"), _replica(Path(tmp), "b")
        now = time.time()
        for c in range(CONTAINERS):
            book = a.s.labels[f"c{c}"] = LabelBook()
            book.outgoing = set()
            stats = []
            for i in range(LABELS):
                times = [rnd.lognormvariate(4, 0.6) for _ in range(SAMPLES)]
                hist: dict[int, int] = {}
                for ms in times:
                    hist[rt_bucket(ms)] = hist.get(rt_bucket(ms), 0) + 1
                stats.append(LabelStats(label=f"HTTP Request {i:03d} /shop/item", samples=SAMPLES, errors=3,
                                        sum_ms=sum(times), min_ms=min(times), max_ms=max(times),
                                        bytes_received=2048 * SAMPLES, bytes_sent=256 * SAMPLES, first_ts=now - 600,
                                        last_ts=now, histogram=hist))  # fmt: skip
            book.take(stats, None)
            a.labels_out.add(f"c{c}")
        t0 = time.perf_counter()
        data = a.gather()
        t1 = time.perf_counter()
        assert data is not None
        blob = live.encode(data)
        t2 = time.perf_counter()
        decoded = live.decode(blob)
        t3 = time.perf_counter()
        b.take(decoded)
        t4 = time.perf_counter()
        assert all(b.s.labels[c].figures == a.s.labels[c].figures for c in a.s.labels)
    return {"bytes": len(blob), "gather": (t1 - t0) * 1e3, "encode": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3,
            "take": (t4 - t3) * 1e3}  # fmt: skip


def run(runs: int = 3, quick: bool = False) -> Result:
    got = repeat(runs, lambda i: measure())
    per_s = [x / HEARTBEAT_S / 1024 for x in got["bytes"]]
    metrics = [
        Metric("a publication of all 3,200 labels", "KB", [x / 1024 for x in got["bytes"]]),
        Metric("published per replica at 5 s heartbeats", "KB/s", per_s),
        Metric("gather on the event loop", "ms", got["gather"]),
        Metric("encode on the reader's thread", "ms", got["encode"]),
        Metric("decode on the reader's thread", "ms", got["decode"]),
        Metric("take on the event loop", "ms", got["take"]),
    ]
    return Result("replica_labels", TITLE, TARGET, METHOD, metrics, [])


if __name__ == "__main__":
    standalone(run, doc=__doc__)
