"""Per-label figures from a container's JTL: the aggregation (agent/labels.py), the incremental
follower (agent/jtlfollow.py), the "changed since the last answered heartbeat" rule through the
agent's records, and one real JMeter run through the agent's Docker runtime.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.containers import DockerRuntime
from agent.jtlfollow import JtlFollower, record_end
from agent.labels import LabelTable, error_key
from agent.records import ContainerRecords, Tracked
from agent.runtime import AgentRuntime
from octotui.protocol import (
    LABEL_AGENT,
    MAX_ERRORS_PER_LABEL,
    OTHER_ERROR,
    OTHER_LABEL,
    Command,
    ContainerReport,
    Heartbeat,
    HostSample,
    LaunchSpec,
    rt_bucket,
)
from tests.support.httptarget import HttpTarget
from tests.support.waiting import wait_until_async

HEADER_5 = (
    "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,"
    "bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect\n"
)
HEADER_213 = (
    "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,"
    "bytes,grpThreads,allThreads,Latency\n"
)


def row5(ts: int, elapsed: int, label: str, code: str = "200", message: str = "OK", ok: bool = True,
         failure: str = "", received: int = 100, sent: int = 50) -> str:  # fmt: skip
    """One JMeter 5.x CSV row (fields quoted as JMeter quotes them)."""

    def q(text: str) -> str:
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text

    return (
        f"{ts},{elapsed},{q(label)},{code},{q(message)},Users 1-1,text,{'true' if ok else 'false'},{q(failure)},"
        f"{received},{sent},1,1,http://127.0.0.1/,{elapsed},0,1\n"
    )


def by_label(items: list[Any]) -> dict[str, Any]:
    return {item.label: item for item in items}


# --- LabelTable: JMeter's Aggregate Report figures per label, bounded.


def test_cumulative_figures_per_label() -> None:
    table = LabelTable()
    table.add("home", 1_000_000, 20, True, 100, 10)
    table.add("home", 999_000, 40, True, 300, 30)
    table.add("home", 1_002_000, 1500, False, 0, 10, "500", "Server Error")
    table.add("login", 1_000_500, 5, True)
    pending = table.pending()
    home = by_label(pending.labels)["home"]
    assert (home.samples, home.errors, home.sum_ms, home.min_ms, home.max_ms) == (3, 1, 1560.0, 20.0, 1500.0)
    assert (home.bytes_received, home.bytes_sent) == (400, 50)
    assert home.first_ts == 999.0 and home.last_ts == 1003.5, "start of the first, end of the last"
    assert home.histogram == {rt_bucket(20): 1, rt_bucket(40): 1, rt_bucket(1500): 1}
    assert [(e.label, e.code, e.message, e.count) for e in pending.errors] == [("home", "500", "Server Error", 1)]
    assert by_label(pending.labels)["login"].errors == 0 and not pending.folded


def test_labels_fold_beyond_the_limit() -> None:
    table = LabelTable(max_labels=3)
    for n in range(10):
        table.add(f"/item/{n}", 1000, n, n % 2 == 0, code="404", message="Not Found")
    pending = table.pending()
    labels = by_label(pending.labels)
    assert set(labels) == {"/item/0", "/item/1", "/item/2", OTHER_LABEL}
    assert labels[OTHER_LABEL].samples == 7 and labels[OTHER_LABEL].errors == 4
    assert pending.folded
    assert by_label(pending.errors)[OTHER_LABEL].count == 4


def test_error_pairs_overflow_into_one_bucket() -> None:
    table = LabelTable()
    for n in range(MAX_ERRORS_PER_LABEL + 5):
        table.add("api", 1000, 1, False, code="500", message=f"error id {n}")
    table.add("api", 1000, 1, False, code="500", message="error id 0")
    errors = [(e.code, e.message, e.count) for e in table.pending().errors]
    assert len(errors) == MAX_ERRORS_PER_LABEL + 1
    assert (OTHER_ERROR, OTHER_ERROR, 5) in errors
    assert ("500", "error id 0", 2) in errors, "a pair already kept still counts under its own name"


def test_error_message_as_jmeters_report_names_it() -> None:
    assert error_key("404", "Not Found", "") == ("404", "Not Found")
    assert error_key("200", "OK", "Test failed: text expected") == ("200", "Test failed: text expected")
    assert error_key("500", "", "Response was null") == ("500", "Response was null")
    assert error_key("500", "Internal", "assertion") == ("500", "Internal")
    assert error_key("Non HTTP response code: java.net.ConnectException", "refused", "") == (
        "Non HTTP response code: java.net.ConnectException", "refused")  # fmt: skip


def test_changed_since_last_acknowledged() -> None:
    table = LabelTable()
    table.add("a", 1000, 1, True)
    table.add("b", 1000, 1, False, code="404", message="Not Found")
    first = table.pending()
    assert {s.label for s in first.labels} == {"a", "b"} and len(first.errors) == 1
    # that heartbeat failed: nothing acknowledged, the next one carries them again
    table.add("a", 1001, 2, True)
    second = table.pending()
    assert {s.label for s in second.labels} == {"a", "b"}
    assert by_label(second.labels)["a"].samples == 2, "cumulative"
    table.add("a", 1002, 3, True)  # after the second was built, before it was answered
    table.acknowledge(second.mark)
    third = table.pending()
    assert [(s.label, s.samples) for s in third.labels] == [("a", 3)] and third.errors == []
    table.acknowledge(third.mark)
    assert table.pending().labels == []
    table.acknowledge(first.mark)  # a late, older acknowledgement changes nothing
    table.add("b", 1003, 1, True)
    fourth = table.pending()
    assert [s.label for s in fourth.labels] == ["b"] and fourth.errors == [], "its error count did not change"


# --- JtlFollower: only new bytes, whole records, columns by name, a missing file tolerated.


def test_missing_file_then_rows_split_across_reads(tmp_path: Path) -> None:
    path = tmp_path / "results.jtl"
    follower = JtlFollower(path)
    assert follower.read() == 0 and follower.pending() is None, "no JTL yet: labels absent"
    text = HEADER_5 + row5(1000, 10, "home") + row5(1001, 20, "post, with comma", "500", 'said "no"', False)
    text += row5(1002, 30, "home", "500", "line one\nline two, too", False)
    with path.open("w") as handle:
        handle.write(HEADER_5[:20])
        handle.flush()
        assert follower.read() == 0 and follower.pending() is None, "half a header is no header"
        counted = 0
        for cut in range(20, len(text), 7):  # every 7 bytes, records cut anywhere (inside quotes too)
            handle.write(text[cut : cut + 7])
            handle.flush()
            counted += follower.read()
    assert counted == 3 and follower.bad_rows == 0
    pending = follower.pending()
    assert pending is not None
    labels = by_label(pending.labels)
    assert labels["home"].samples == 2 and labels["home"].errors == 1
    assert labels["post, with comma"].errors == 1
    messages = {(e.label, e.message) for e in pending.errors}
    assert messages == {("post, with comma", 'said "no"'), ("home", "line one\nline two, too")}


def test_header_of_jmeter_213_and_reordered_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.jtl"
    path.write_text(HEADER_213 + "1000,12,home,404,Not Found,Users 1-1,,false,,121,1,1,12\n")
    follower = JtlFollower(path)
    assert follower.read() == 1
    pending = follower.pending()
    assert pending is not None
    home = pending.labels[0]
    assert (home.samples, home.errors, home.bytes_received, home.bytes_sent) == (1, 1, 121, 0)
    assert [(e.code, e.message) for e in pending.errors] == [("404", "Not Found")]
    other = tmp_path / "reordered.jtl"
    other.write_text("label,success,elapsed,timeStamp\nx,true,7,5000\n")
    follower = JtlFollower(other)
    assert follower.read() == 1
    pending = follower.pending()
    assert pending is not None and pending.labels[0].min_ms == 7 and pending.labels[0].first_ts == 5.0


def test_garbage_and_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jtl"
    path.write_text(HEADER_5 + row5(1000, 10, "a") + "not,a,row\n" + row5(1001, 11, "a")[:25])
    follower = JtlFollower(path)
    assert follower.read() == 1, "the last line waits for its end"
    assert follower.read(final=True) == 0 and follower.bad_rows == 2, "at the end it is read, and refused"
    not_jtl = tmp_path / "x.jtl"
    not_jtl.write_text("<?xml version='1.0'?>\n<testResults>\n")
    follower = JtlFollower(not_jtl)
    assert follower.read() == 0 and follower.pending() is None and follower.unusable


def test_record_end_ignores_line_feeds_inside_quotes() -> None:
    assert record_end(b'a,b\nc,"d\ne') == 4
    assert record_end(b'a,"b\n""c"""\n') == 12
    assert record_end(b'a,"b\n') == 0


def test_cpu_at_ten_thousand_samples_per_second(tmp_path: Path) -> None:
    """Reports the follower's CPU for 10 s of a 10,000 samples/s JTL read once a second (no
    timed assertion: the figure is printed, the counts are checked)."""
    path = tmp_path / "results.jtl"
    follower = JtlFollower(path)

    def row(n: int) -> str:
        failed = n % 50 == 0
        return row5(1_700_000_000_000 + n, 5 + n % 300, f"label {n % 20}", "404" if failed else "200",
                    "Not Found" if failed else "OK", not failed)  # fmt: skip

    second = "".join(row(n) for n in range(10_000))
    used = 0.0
    with path.open("w") as handle:
        handle.write(HEADER_5)
        for _ in range(10):
            handle.write(second)
            handle.flush()
            start = time.process_time()
            follower.read()
            pending = follower.pending()
            assert pending is not None
            follower.acknowledge(pending.mark)
            used += time.process_time() - start
    assert follower.rows == 100_000 and follower.bad_rows == 0
    print(f"\nJTL follower: {100 * used / 10:.1f} % of one core at 10,000 samples/s "
          f"({len(second) / 1e6:.1f} MB/s of JTL)")  # fmt: skip


# --- Through the agent's records: only answered heartbeats acknowledge labels.


def test_failed_heartbeat_keeps_labels_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "results.jtl"
    path.write_text(HEADER_5 + row5(1000, 10, "home") + row5(1000, 10, "api", "404", "Not Found", False))
    records = ContainerRecords(tmp_path / "containers.json")
    tracked = Tracked("c1", "t1", None, "running", jtl=JtlFollower(path))
    records.by_id["c1"] = tracked
    assert tracked.report().labels is None, "not read yet: no JTL known"
    tracked.jtl.read()  # type: ignore[union-attr]
    marks: dict[str, int] = {}
    lost = tracked.report(marks)  # this heartbeat fails: no delivered()
    assert lost.labels is not None and {s.label for s in lost.labels} == {"home", "api"}
    marks = {}
    sent = tracked.report(marks)
    assert sent.labels is not None and {s.label for s in sent.labels} == {"home", "api"}
    assert sent.errors is not None and [(e.code, e.count) for e in sent.errors] == [("404", 1)]
    records.delivered(["c1"], marks)
    assert tracked.report().labels == [] and tracked.report().errors == [], "[] when nothing changed"
    with path.open("a") as handle:
        handle.write(row5(2000, 30, "home"))
    tracked.jtl.read()  # type: ignore[union-attr]
    again = tracked.report()
    assert again.labels is not None and [(s.label, s.samples) for s in again.labels] == [("home", 2)]
    # the heartbeat validates on the wire and keeps the fields
    beat = Heartbeat(host=HostSample(ts=0.0, cpu_percent=0.0, memory_percent=0.0), containers=[again])
    parsed = Heartbeat.model_validate_json(beat.model_dump_json())
    assert parsed.containers[0].labels == again.labels


def test_ended_reports_keep_every_label_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "results.jtl"
    path.write_text(HEADER_5 + row5(1000, 10, "home") + row5(1000, 10, "api", "404", "Not Found", False))
    records = ContainerRecords(tmp_path / "containers.json")
    tracked = Tracked("c1", "t1", None, "finished", jtl=JtlFollower(path))
    records.by_id["c1"] = tracked
    tracked.jtl.read(final=True)  # type: ignore[union-attr]
    marks: dict[str, int] = {}
    tracked.report(marks)
    records.delivered(["c1"], marks)  # acknowledged, and then the agent restarts
    records.save()
    again = ContainerRecords(tmp_path / "containers.json").get("c1")
    assert again is not None
    report = again.report()
    assert report.labels is not None and {s.label for s in report.labels} == {"home", "api"}
    assert report.errors is not None and report.errors[0].code == "404"


def _no_jtl_report_is_none() -> ContainerReport:
    return Tracked("c", "t", None, "starting").report()


def test_no_jtl_means_no_labels_field() -> None:
    report = _no_jtl_report_is_none()
    assert report.labels is None and report.errors is None and not report.labels_folded
    assert "labels" not in report.model_dump(exclude_none=True)


# --- the real JMeter image ----------------------------------------------------------------------

TWO_LABELS = """<?xml version="1.0" encoding="UTF-8"?>
<jmeterTestPlan version="1.2" properties="2.8" jmeter="2.13"><hashTree>
<TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="two labels" enabled="true">
<elementProp name="TestPlan.user_defined_variables" elementType="Arguments"><collectionProp name="Arguments.arguments"/>
</elementProp></TestPlan>
<hashTree>
<ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="Users" enabled="true">
<stringProp name="ThreadGroup.on_sample_error">continue</stringProp>
<elementProp name="ThreadGroup.main_controller" elementType="LoopController" guiclass="LoopControlPanel"
 testclass="LoopController" testname="L" enabled="true">
<boolProp name="LoopController.continue_forever">false</boolProp>
<stringProp name="LoopController.loops">${__P(loops,20)}</stringProp></elementProp>
<stringProp name="ThreadGroup.num_threads">2</stringProp><stringProp name="ThreadGroup.ramp_time">0</stringProp>
</ThreadGroup>
<hashTree>
<ConstantTimer guiclass="ConstantTimerGui" testclass="ConstantTimer" testname="think" enabled="true">
<stringProp name="ConstantTimer.delay">${__P(think_ms,0)}</stringProp></ConstantTimer><hashTree/>
%s
%s
</hashTree></hashTree></hashTree></jmeterTestPlan>
"""
SAMPLER = """<HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="%s" enabled="true">
<elementProp name="HTTPsampler.Arguments" elementType="Arguments">
<collectionProp name="Arguments.arguments"/></elementProp>
<stringProp name="HTTPSampler.domain">127.0.0.1</stringProp>
<stringProp name="HTTPSampler.port">${__P(port)}</stringProp>
<stringProp name="HTTPSampler.protocol">http</stringProp><stringProp name="HTTPSampler.path">%s</stringProp>
<stringProp name="HTTPSampler.method">GET</stringProp><boolProp name="HTTPSampler.use_keepalive">true</boolProp>
</HTTPSamplerProxy><hashTree/>"""


@pytest.fixture
def agent_id(docker_client: Any) -> Iterator[str]:
    value = f"a-labels-{uuid.uuid4().hex[:10]}"
    yield value
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={value}"}):
        container.remove(force=True)


@pytest.fixture
async def runtime(tmp_path: Path, agent_id: str) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(tmp_path / "work", agent_id, state_file=tmp_path / "containers.json")
    info, _ = await rt.check_engine()
    assert info.available
    yield rt
    await rt.aclose()


@pytest.mark.docker
@pytest.mark.jmeter
async def test_real_jmeter_two_labels_one_all_404(runtime: DockerRuntime, jmeter_image: str) -> None:
    """Heartbeat reports built by the real runtime from a real JMeter's JTL: two labels, the 404
    one with errors == samples and an error count under code 404; what the heartbeats carry,
    merged by label (each cumulative), equals the JTL read whole at the end."""
    with HttpTarget() as target:
        cid = f"c-{uuid.uuid4().hex[:8]}"
        plan = TWO_LABELS % (SAMPLER % ("home", "/"), SAMPLER % ("missing", "/status/404"))
        spec = LaunchSpec(test_id="t-labels", container_id=cid, image=jmeter_image, plan=plan,
                          properties={"port": str(target.port), "loops": "300", "think_ms": "10"})  # fmt: skip
        await runtime.launch(Command(id=f"cmd-{cid}", kind="launch", container_id=cid, test_id="t-labels",
                                     launch=spec))  # fmt: skip
        seen: dict[str, Any] = {}
        live: list[int] = []  # samples of "home" reported while the container still ran
        errors: dict[tuple[str, str, str], int] = {}
        beats = 0
        lock = threading.Lock()

        async def beat() -> ContainerReport | None:
            """One heartbeat's report of the container, answered (acknowledged) like the server would."""
            nonlocal beats
            marks: dict[str, int] = {}
            report = next(r for r in await runtime.reports(marks) if r.container_id == cid)
            with lock:
                beats += 1
                for stats in report.labels or []:
                    seen[stats.label] = stats
                    if report.state == "running" and stats.label == "home":
                        live.append(stats.samples)
                for error in report.errors or []:
                    errors[(error.label, error.code, error.message)] = error.count
            runtime.delivered([cid], marks)
            return report if report.state in ("finished", "failed") else None

        done = await wait_until_async(beat, timeout=120, interval=0.5, what="the end of the run")
        assert done.state == "finished", done.error
        assert done.final is not None
        final = await wait_until_async(beat, timeout=5, interval=0.1, what="the report after the end")
        assert final.labels == [], "everything was acknowledged already"
    assert set(seen) == {"home", "missing"}
    assert live and 0 < live[0] < 600, f"figures while JMeter ran, not only at its end: {live}"
    home, missing = seen["home"], seen["missing"]
    assert home.samples == missing.samples == 600 and home.errors == 0
    assert missing.errors == missing.samples
    assert errors == {("missing", "404", "Not Found"): 600}
    assert home.samples + missing.samples == done.final.samples
    assert missing.bytes_received > 0 and home.first_ts is not None and home.last_ts is not None
    assert home.first_ts <= home.last_ts and sum(home.histogram.values()) == home.samples
    print(f"\n{beats} heartbeat reports, home's samples while running: {live}")


def test_a_report_stays_under_its_bucket_budget_and_the_rest_follows() -> None:
    """Many busy labels: each report carries at most the budget's histogram buckets; the labels
    left out follow in the next reports, and one left out by a report that failed is not lost."""
    table = LabelTable()
    for label in ("a", "b", "c"):
        for ms in range(1, 11):  # 10 buckets each
            table.add(label, 1000, ms, True)
    first = table.pending(max_buckets=15)
    assert [s.label for s in first.labels] == ["a"], "b would pass the budget: left for the next report"
    second = table.pending(max_buckets=15)  # the first one failed: nothing acknowledged
    assert [s.label for s in second.labels] == ["b"], "the longest-waiting first; a and c wait now"
    table.acknowledge(second.mark)
    sent = {s.label for s in second.labels}
    third = table.pending(max_buckets=100)
    assert {s.label for s in third.labels} == {"a", "b", "c"} - sent, "what no answered report carried"
    table.acknowledge(third.mark)
    assert table.pending().labels == []
    big = LabelTable()
    for ms in range(1, 50):
        big.add("huge", 1000, ms, True)
    assert [s.label for s in big.pending(max_buckets=5).labels] == ["huge"], "one label always goes"


def test_a_new_label_asks_for_a_heartbeat_at_most_once_a_second(tmp_path: Path) -> None:
    """A label the server has not seen goes out with a heartbeat at once (measured: 3.2 s to the
    screen with 5 s heartbeats), but a plan making new labels every row cannot make it beat more
    than once a second."""
    follower = JtlFollower(tmp_path / "results.jtl")
    with (tmp_path / "results.jtl").open("w") as jtl:
        jtl.write(HEADER_5 + row5(1000, 10, "home"))
    follower.read()
    assert follower.label_count == 1
    with (tmp_path / "results.jtl").open("a") as jtl:
        jtl.write(row5(1001, 10, "home") + row5(1002, 10, "login"))
    before = follower.label_count
    follower.read()
    assert follower.label_count == before + 1, "a new label is seen"

    runtime = AgentRuntime.__new__(AgentRuntime)  # only the wake-up is tested: no server, no engine
    runtime._beat_now = asyncio.Event()
    runtime._last_label_beat = 0.0
    runtime._new_label()
    assert runtime._beat_now.is_set()
    runtime._beat_now.clear()
    runtime._new_label()
    assert not runtime._beat_now.is_set(), "twice within a second: one heartbeat"
    runtime._last_label_beat -= 1.0
    runtime._new_label()
    assert runtime._beat_now.is_set()
