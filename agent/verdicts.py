"""How a run ended: ``finished`` or ``failed`` and why, from the exit code, the JTL and JMeter's own
error lines. JMeter 2.13 exits 0 when it could not run the plan at all, so the exit code alone lies.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from agent.jmeter import first_failure, is_error_line, read_jtl
from agent.records import ERROR_TEXT_MAX, Tracked
from octotui.protocol import FinalResults


@dataclass(frozen=True, slots=True)
class Verdict:
    """The end of one run: its state, its error (None when all went well) and its final figures."""

    state: str
    error: str | None
    final: FinalResults | None


def judge(tracked: Tracked, root: Path, exit_code: int | None, reason: str | None) -> Verdict:
    """The verdict on a container whose work folder is ``root`` (reads its files: call it in a thread).

    ``reason`` is set when the container ended outside JMeter (vanished, engine lost): a failure.
    """
    final = read_jtl(root / "results" / "results.jtl")
    error = reason
    state = "failed"
    if reason is None:
        if exit_code == 0:
            state = "finished"
            error = failed_run(tracked, root, final)
            if error:
                state = "failed"
        elif tracked.stop_requested:
            state = "finished"
            error = f"stopped by docker stop (exit code {exit_code}): JMeter did not stop gracefully"
        else:
            error = jmeter_errors(tracked, root) or f"JMeter exited with code {exit_code}"
    return Verdict(state, error[:ERROR_TEXT_MAX] if error else None, final)


def failed_run(tracked: Tracked, root: Path, final: FinalResults | None) -> str | None:
    """Why a run that exited 0 failed all the same, or None.

    JMeter 2.13 exits 0 when it cannot load its plan (``Error in NonGUIDriver``) or parse its
    arguments (``Error: Unable to parse first argument for option -J``); a run with no sample
    did not run the plan (a plan of 0 threads too: a load test that sent nothing is not a
    success, unless a stop came before the first sample); and a run whose every sample failed
    (target refused) ran no load at all.
    """
    errors = jmeter_errors(tracked, root)
    if errors and "Error in NonGUIDriver" in errors:
        return errors
    if final is None or final.samples == 0:
        if errors:
            return errors
        return None if tracked.stop_requested else "JMeter recorded no samples"
    if final.samples > 0 and final.errors == final.samples:
        first = first_failure(root / "results" / "results.jtl")
        if tracked.stop_requested and first and cut_by_stop(first):
            # the first sample to end was cut by the stop: every sample was in flight when it
            # came (a JVM that started late), which says nothing of the target
            return None
        text = f"every sample failed ({final.errors} of {final.samples})"
        return text + (f": {first}" if first else "") + (f"\n{errors}" if errors else "")
    return None


def cut_by_stop(failure: str) -> bool:
    """True when a failed sample's code and message (:func:`first_failure`) are those of a request
    JMeter's ``StopTestNow`` cut: interrupted while it waited (``InterruptedIOException``), or
    aborted while it read the answer, its socket closed by JMeter itself (``SocketException`` "Socket
    closed"; a target that closes the connection reads "Connection reset" or "failed to respond")."""
    if "InterruptedIOException" in failure:
        return True
    return "SocketException" in failure and ("Socket closed" in failure or "Socket is closed" in failure)


def jmeter_errors(tracked: Tracked, root: Path) -> str | None:
    """JMeter's last error lines: from its log file, else from its console output."""
    lines: list[str] = []
    log_path = root / "results" / "jmeter.log"
    with contextlib.suppress(OSError), log_path.open(encoding="utf-8", errors="replace") as handle:
        lines = [line.strip() for line in handle if is_error_line(line)][-10:]
    if not lines:
        lines = list(tracked.tracker.errors)[-10:]
    return "\n".join(lines) if lines else None
