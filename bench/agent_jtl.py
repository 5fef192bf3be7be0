"""Figure: the agent following one container's JTL at 10,000 samples/s (issue 12, Performance).

Three roles, each its own process: the suite (``run``), a writer (``python -m bench.agent_jtl write
PATH --rate N --seconds S``) appending JMeter 5 CSV rows to PATH at N rows/s, and a follower
(``python -m bench.agent_jtl follow PATH --seconds S``) doing what the agent does with a running
container's JTL, printing one JSON line with its CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from agent.jtlfollow import JtlFollower
from agent.records import ContainerRecords, Tracked
from bench.common import ROOT, Metric, Result, repeat, scratch

TITLE = "Agent following one container's JTL at 10,000 samples/s"
TARGET = "< 10 % of one core"
RATE = 10_000
LABELS = 20
#: JMeter 5's default CSV columns (jmeter.save.saveservice.* defaults), in its order.
HEADER = (
    "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,"
    "bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect"
)
METHOD = f"""the agent's own code in a process of its own: `agent.jtlfollow.JtlFollower` (into
`agent.labels.LabelTable`) read every 1 s in a thread (`asyncio.to_thread`, as `agent/following.py`
does), and each second a container report built by `agent.records.Tracked.report` (the labels not
yet acknowledged), serialised to JSON as the heartbeat is (`model_dump_json`) and acknowledged
through `ContainerRecords.delivered`, as the agent does once a heartbeat is answered. A separate
writer process appends {RATE:,} rows/s to the JTL in JMeter 5's CSV format (its 17 default
columns, a header first), {LABELS} labels, log-normal response times, 2 % errors over two codes
(one message quoted with a comma, as JMeter quotes it), written every 10 ms and flushed (JMeter
with autoflush). After a 5 s warm-up, the follower's CPU time (`time.process_time`, its threads
included) over the window is divided by the wall time. Why not a real agent with a real container:
JMeter making 10,000 requests/s on this 2-core machine would take both cores from the agent it is
measured beside, so the follower runs alone, on the same code, and its CPU is the figure."""


def write(path: Path, rate: int, seconds: float, seed: int = 12) -> None:
    """Append ``rate`` rows/s to ``path`` for ``seconds``, in 10 ms slices, flushed each slice."""
    rng = random.Random(seed)
    labels = [f"T{k:02d} GET /api/resource/{k}" for k in range(LABELS)]
    medians = [20.0 + 380.0 * k / LABELS for k in range(LABELS)]
    errors = [("500", "Internal Server Error", ""), ("Non HTTP response code: java.net.SocketException",
              '"Non HTTP response message: Connection reset, by peer"', "")]  # fmt: skip
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "\n")
        out.flush()
        start = time.monotonic()
        written = 0
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= seconds:
                break
            due = int(elapsed * rate) - written
            now_ms = int(time.time() * 1000)
            lines = []
            for _ in range(due):
                k = rng.randrange(LABELS)
                ms = max(1, int(rng.lognormvariate(0.0, 0.6) * medians[k]))
                ok = rng.random() >= 0.02
                code, message, failure = ("200", "OK", "") if ok else errors[rng.randrange(2)]
                lines.append(
                    f"{now_ms - ms},{ms},{labels[k]},{code},{message},Users 1-{k + 1},text,"
                    f"{'true' if ok else 'false'},{failure},{rng.randrange(2000, 4000)},412,50,50,"
                    f"http://127.0.0.1:8080/api/resource/{k},{max(1, ms - 1)},0,{rng.randrange(0, 3)}\n"
                )
            out.write("".join(lines))
            out.flush()
            written += due
            time.sleep(0.01)
    print(json.dumps({"rows": written, "seconds": time.monotonic() - start}))


async def _follow(path: Path, seconds: float, warmup: float) -> dict[str, float]:
    records = ContainerRecords(None)
    tracked = Tracked(container_id="c-bench", test_id="t-bench", command_id="cmd-bench", state="running")
    tracked.jtl = JtlFollower(path)
    records.by_id[tracked.container_id] = tracked
    reports = sizes = 0
    started = time.monotonic()
    cpu0 = wall0 = rows0 = None
    next_at = started
    while True:
        now = time.monotonic()
        if cpu0 is None and now - started >= warmup:
            cpu0, wall0, rows0 = time.process_time(), now, tracked.jtl.rows
        if now - started >= warmup + seconds:
            break
        await asyncio.to_thread(tracked.jtl.read)  # as agent/following.py: every second, in a thread
        marks: dict[str, int] = {}
        with records.lock:
            report = tracked.report(marks)
        body = report.model_dump_json()  # what the heartbeat sends
        sizes += len(body)
        reports += 1
        records.delivered([tracked.container_id], marks)  # the server answered: acknowledged
        next_at += 1.0
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    cpu1, wall1 = time.process_time(), time.monotonic()
    assert cpu0 is not None and wall0 is not None and rows0 is not None
    table = tracked.jtl.table
    return {
        "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "rows": tracked.jtl.rows - rows0,
        "bad_rows": tracked.jtl.bad_rows, "labels": len(table.labels) if table else 0,
        "report_bytes": sizes / max(1, reports),
    }  # fmt: skip


def _once(window: float) -> dict[str, float]:
    warmup = 5.0
    with scratch("jtl") as tmp:
        jtl = tmp / "results.jtl"
        py = [sys.executable, "-m", "bench.agent_jtl"]
        writer = subprocess.Popen(
            [*py, "write", str(jtl), "--rate", str(RATE), "--seconds", str(window + warmup + 5)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            follower = subprocess.run(
                [*py, "follow", str(jtl), "--seconds", str(window), "--warmup", str(warmup)],
                cwd=ROOT, capture_output=True, text=True, timeout=window + warmup + 60, check=False,
            )  # fmt: skip
            if follower.returncode != 0:
                raise AssertionError(f"follower failed: {follower.stderr[-3000:]}")
            got = json.loads(follower.stdout.strip().splitlines()[-1])
            out, _ = writer.communicate(timeout=window + 60)
            wrote = json.loads(out.strip().splitlines()[-1])
        finally:
            if writer.poll() is None:
                writer.terminate()
                writer.wait(timeout=10)
    if got["bad_rows"] or got["labels"] != LABELS:
        raise AssertionError(f"follower miscounted: {got}")
    return {
        "cpu": got["cpu_s"] / got["wall_s"] * 100, "rate": got["rows"] / got["wall_s"],
        "written_rate": wrote["rows"] / wrote["seconds"], "report_kb": got["report_bytes"] / 1024,
    }  # fmt: skip


def run(runs: int, quick: bool) -> Result:
    window = 20.0 if quick else 60.0
    got = repeat(runs, lambda i: _once(window))
    details = [
        f"run {i + 1}: writer {w:,.0f} rows/s, follower counted {r:,.0f} rows/s, one report ~{kb:.0f} KiB of JSON"
        for i, (w, r, kb) in enumerate(zip(got["written_rate"], got["rate"], got["report_kb"], strict=True))
    ]
    return Result(
        figure="agent_jtl", title=TITLE, target=TARGET, method=METHOD + f" Window: {window:.0f} s per run.",
        metrics=[
            Metric("follower CPU", "% of one core", got["cpu"], 10.0),
            Metric("rows counted", "per s", got["rate"], RATE * 0.95, sense=">"),
        ],
        details=details,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_jtl")
    sub = parser.add_subparsers(dest="role", required=True)
    w = sub.add_parser("write")
    w.add_argument("path", type=Path)
    w.add_argument("--rate", type=int, default=RATE)
    w.add_argument("--seconds", type=float, default=30)
    f = sub.add_parser("follow")
    f.add_argument("path", type=Path)
    f.add_argument("--seconds", type=float, default=30)
    f.add_argument("--warmup", type=float, default=5)
    args = parser.parse_args()
    if args.role == "write":
        write(args.path, args.rate, args.seconds)
    else:
        print(json.dumps(asyncio.run(_follow(args.path, args.seconds, args.warmup))))


if __name__ == "__main__":
    main()
