"""How the agent judges a run that exited 0 from its JTL: a stop that cut the only samples in flight
is no failure of the target; every sample failed for any other reason is one."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.records import Tracked
from agent.verdicts import cut_by_stop, judge

HEADER = "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,bytes\n"
SOCKET_CLOSED = (
    "Non HTTP response code: java.net.SocketException",
    "Non HTTP response message: Socket closed",
)
INTERRUPTED = (
    "Non HTTP response code: java.io.InterruptedIOException",
    "Non HTTP response message: Connection has been shut down",
)
REFUSED = (
    "Non HTTP response code: org.apache.http.conn.HttpHostConnectException",
    "Non HTTP response message: Connection to http://127.0.0.1:9 refused",
)
RESET = ("Non HTTP response code: java.net.SocketException", "Non HTTP response message: Connection reset")


def _run(tmp_path: Path, *failures: tuple[str, str], stopped: bool) -> tuple[str, str | None]:
    results = tmp_path / "results"
    results.mkdir()
    rows = [
        f"1700000000{i:03d},{900 + i},get,{code},{text},t 1-1,text,false,0\n" for i, (code, text) in enumerate(failures)
    ]
    (results / "results.jtl").write_text(HEADER + "".join(rows))
    tracked = Tracked(container_id="c-1", test_id="t-1", command_id=None, state="running", stop_requested=stopped)
    verdict = judge(tracked, tmp_path, exit_code=0, reason=None)
    return verdict.state, verdict.error


@pytest.mark.parametrize("cut", [SOCKET_CLOSED, INTERRUPTED], ids=["socket-closed", "interrupted"])
def test_a_stop_that_cut_the_only_sample_in_flight_is_a_finished_run(tmp_path: Path, cut: tuple[str, str]) -> None:
    assert _run(tmp_path, cut, stopped=True) == ("finished", None)


def test_the_same_cut_without_a_stop_asked_is_a_failed_run(tmp_path: Path) -> None:
    state, error = _run(tmp_path, SOCKET_CLOSED, stopped=False)
    assert state == "failed"
    assert error == "every sample failed (1 of 1): " + " ".join(SOCKET_CLOSED)


@pytest.mark.parametrize("why", [REFUSED, RESET], ids=["refused", "reset-by-the-target"])
def test_a_target_that_failed_every_sample_fails_the_run_even_when_stopped(
    tmp_path: Path, why: tuple[str, str]
) -> None:
    state, error = _run(tmp_path, why, why, stopped=True)
    assert state == "failed"
    assert error is not None and error.startswith("every sample failed (2 of 2): " + " ".join(why))


def test_only_jmeters_own_close_reads_as_a_cut() -> None:
    assert cut_by_stop(" ".join(SOCKET_CLOSED)) and cut_by_stop(" ".join(INTERRUPTED))
    assert not cut_by_stop(" ".join(RESET)) and not cut_by_stop(" ".join(REFUSED))
    assert not cut_by_stop("500 Socket closed"), "a target's own words are not JMeter's exception"
