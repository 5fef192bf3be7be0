"""``octotui launch``, ``stop`` and ``run`` (launch, follow on one line, print the summary).

Everything a launch needs is checked before any connection (the plan file, ``-J key=value``, the
``--file`` paths, the contract's own rules), so a bad input exits 2 having launched nothing, not even
an embedded server. The files are uploaded once the server is reached, after a dry run says that it
would take the launch; a launch it refuses all the same deletes them (see :mod:`.files`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from octotui.client import Client, ClientError, ServerUnreachable
from octotui.commands import files
from octotui.commands import output as o
from octotui.commands.files import LocalFile
from octotui.commands.listing import print_test
from octotui.commands.session import (
    EXIT_CRITERIA,
    EXIT_INTERRUPTED,
    EXIT_LOST,
    EXIT_OK,
    EXIT_TEST_FAILED,
    EXIT_USAGE,
    Target,
    Usage,
)
from octotui.protocol import TERMINAL_TEST_STATES, ErrorFigures, LabelFigures, Test, TestCreate

POLL_S = 1.0
PLAIN_EVERY_S = 5.0  # progress lines when stderr is not a terminal (a CI log)
AGENT_WAIT_S = 30.0  # an embedded agent started for the command registers within a few seconds
STOP_WAIT_S = 60.0  # after a stop, how long an owned embedded server waits for the containers to end
VERDICT_WAIT_S = 5.0  # how long an ended test's verdict may be awaited
BACKOFF_MAX_S = 10.0  # run: the longest wait between two tries while the server is lost
TRANSIENT_STATUSES = (502, 503, 504)  # a proxy with no replica behind it, a store briefly gone, a timeout

LAUNCH_RESEND_S = 30.0  # how long a launch whose answer was lost is sent again (same Idempotency-Key)
T = TypeVar("T")


class RunSummary(BaseModel):
    """``octotui run --json``: the ended test and its figures per label and per error, as
    ``GET /tests/{id}``, ``/labels`` and ``/errors`` answer them (lists empty when the server has none)."""

    test: Test
    labels: list[LabelFigures]
    errors: list[ErrorFigures]


def _problem(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)


def test_spec(args: argparse.Namespace) -> TestCreate:
    """The launch the arguments describe; :class:`Usage` for a missing plan, a ``-J`` without ``=``
    or anything the contract refuses."""
    path = Path(args.plan)
    try:
        plan = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Usage(f"plan file not found: {path}") from None
    except UnicodeDecodeError:
        raise Usage(f"plan file {path} is not UTF-8 text (a JMX plan is XML)") from None
    except OSError as exc:
        raise Usage(f"cannot read plan file {path}: {exc.strerror or exc}") from None
    properties: dict[str, str] = {}
    for item in args.property or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise Usage(f"-J {item!r}: expected key=value (e.g. -J host=example.com)")
        if not key.strip():
            raise Usage(f"-J {item!r}: the property name is empty")
        properties[key] = value
    locations = [x.strip() for x in args.locations.split(",") if x.strip()] if args.locations else None
    monitors = [x.strip() for item in args.monitor or [] for x in item.split(",")]
    if "" in monitors:
        raise Usage("--monitor: an empty monitor id or name (give ids or names, comma-separated)")
    if args.stop_on_critical and not monitors:
        raise Usage("--stop-on-critical needs at least one --monitor (its critical alarms stop the test)")
    try:
        return TestCreate(
            name=args.name or path.stem or "test",
            plan=plan,
            provider=args.provider,
            containers=args.containers,
            locations=locations,
            image=args.image,
            properties=properties,
            users=args.users,
            duration=args.duration,
            rampup=args.rampup,
            criteria=args.criteria or [],  # parsed by the server: its 422 names the bad one and where
            monitors=list(dict.fromkeys(monitors)),  # checked by the server: its 422 names an unknown one
            stop_on_critical=args.stop_on_critical,
        )
    except ValidationError as exc:
        raise Usage(f"invalid launch: {_problem(exc)}") from None


async def _wait_for_local_agent(client: Client, spec: TestCreate) -> None:
    """A server started for this command: wait until its agent is online in the named provider."""
    deadline = time.monotonic() + AGENT_WAIT_S
    while time.monotonic() < deadline:
        agents = await client.agents()
        # Registration makes it online; its Docker engine is known from its first heartbeat on.
        if any(
            a.status == "online" and a.docker is not None and spec.provider in (a.provider, a.provider_name)
            for a in agents
        ):
            return
        await asyncio.sleep(0.3)
    # Launch anyway: the server's refusal (no online agent, unknown provider) says what is wrong.


async def _launch(client: Client, target: Target, spec: TestCreate, local: list[LocalFile]) -> Test:
    """Launch ``spec`` with the ``--file``s uploaded first; a launch the server refuses deletes them."""
    if target.owned:
        await _wait_for_local_agent(client, spec)
    if local:  # a refusal that needs no file (provider, plan, placement) comes before any upload
        await client.plan_test(spec)
    spec, uploaded = await files.upload(client, spec, local)
    try:
        return await _create(client, spec)
    except Exception:
        await files.forget(client, uploaded)  # refused; if it did start, the server keeps its files (409)
        raise


async def _create(client: Client, spec: TestCreate) -> Test:
    """``POST /tests`` with one Idempotency-Key, sent again with it (nothing starts twice) while its
    answer is lost: no answer, or a proxy's 502/503/504 (a replica that died with the launch made or
    not), for up to :data:`LAUNCH_RESEND_S` seconds; a refusal is final at once."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + LAUNCH_RESEND_S
    pause = 1.0
    while True:
        try:
            return await client.create_test(spec, idempotency_key=key)
        except ClientError as exc:
            lost = isinstance(exc, ServerUnreachable) or exc.status in TRANSIENT_STATUSES
            if not lost or time.monotonic() + pause > deadline:
                raise
            print(f"launch: answer lost ({exc.message}); sending it again in {pause:.0f} s with the same "
                  "Idempotency-Key (nothing starts twice)", file=sys.stderr)  # fmt: skip
            await asyncio.sleep(pause)
            pause = min(pause * 2, 8.0)


def _placed(t: Test) -> str:
    per_agent: dict[str, int] = {}
    for c in t.containers:
        name = c.agent_name or c.agent
        per_agent[name] = per_agent.get(name, 0) + 1
    return ", ".join(f"{name} x{n}" for name, n in per_agent.items())


def _launched_line(t: Test) -> str:
    where = t.provider_name or t.provider
    return f"launched test {t.id} {t.name!r} on {where}: {o.plural(len(t.containers), 'container')} ({_placed(t)})"


def _exit_code(t: Test) -> int:
    """3 with nothing to judge (no samples), 1 when the criteria failed (also a test a held criterion
    stopped), 3 when the test failed otherwise (every container lost or failed), else 0."""
    if t.results.samples == 0:
        return EXIT_TEST_FAILED
    if t.verdict == "failed":
        return EXIT_CRITERIA
    return EXIT_OK if t.state == "finished" else EXIT_TEST_FAILED


def _failed_criteria(t: Test) -> str:
    """``p95<500ms (p95 612 ms, over 500 ms by 112 ms (22 %)); …``: what failed and by how much."""
    return "; ".join(f"{c.expr} ({c.detail})" if c.detail else c.expr for c in t.criteria if c.passed is False)


async def _verdict(client: Client, t: Test, spec: TestCreate, patience: _Patience | None = None) -> Test:
    """The ended test once its criteria are decided (the verdict may follow the end by a moment)."""
    if not spec.criteria or t.verdict is not None or t.results.samples == 0:
        return t
    return await _until(client, t.id, lambda x: x.verdict is not None, within=VERDICT_WAIT_S, patience=patience)


async def launch(
    client: Client, args: argparse.Namespace, target: Target, spec: TestCreate, local: list[LocalFile]
) -> int:
    t = await _launch(client, target, spec, local)
    if not args.json:
        print(_launched_line(t))
    patience = None
    if args.wait:  # launched: a server lost meanwhile is retried, then exit 4, never 2
        patience = _Patience(t.id, args.follow_timeout, command="launch")
        try:
            t = await _until(
                client, t.id, lambda x: x.state in TERMINAL_TEST_STATES or _all_running(x), patience=patience
            )
        except _Lost as exc:
            return _lost(patience, exc)
        if not args.json:
            print(f"test {t.id}: {t.state}" + (f" ({t.reason})" if t.reason else ""))
    if args.json:
        o.print_json(t)
    if t.state in TERMINAL_TEST_STATES:  # ended while waited for: judged as run judges it
        try:
            t = await _verdict(client, t, spec, patience)
        except _Lost as exc:
            assert patience is not None  # lost only when retried
            return _lost(patience, exc)
        return _judged(t, "launch", spec)
    return EXIT_OK


def _judged(t: Test, command: str, spec: TestCreate) -> int:
    """The exit code of an ended test, with its reason on stderr when it is not 0."""
    code = _exit_code(t)
    if code == EXIT_CRITERIA:
        print(f"octotui {command}: test {t.id} failed its criteria: {_failed_criteria(t)}", file=sys.stderr)
    elif code == EXIT_TEST_FAILED:
        why = t.reason or ("no samples" if t.results.samples == 0 else t.state)
        print(f"octotui {command}: test {t.id} failed: {why}", file=sys.stderr)
    elif spec.criteria and t.verdict is None:
        # Criteria given but never judged (a server older than them): a CI job must not read a pass.
        print(f"octotui {command}: test {t.id}: the server did not evaluate the criteria "
              "(it is older than them?)", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    return code


def _all_running(t: Test) -> bool:
    return t.state == "running" and bool(t.containers) and all(c.state == "running" for c in t.containers)


async def _until(
    client: Client,
    test_id: str,
    done: Callable[[Test], bool],
    within: float | None = None,
    patience: _Patience | None = None,
) -> Test:
    """The test once ``done`` holds (or after ``within`` seconds), asked every second (through
    ``patience`` when given: transient failures retried)."""
    deadline = None if within is None else time.monotonic() + within
    while True:
        t = await (patience.ask(lambda: client.test(test_id)) if patience else client.test(test_id))
        if done(t) or (deadline is not None and time.monotonic() >= deadline):
            return t
        await asyncio.sleep(POLL_S)


async def stop(client: Client, args: argparse.Namespace, target: Target) -> int:
    t = await client.stop_test(args.id)
    if args.wait or target.owned:
        t = await _until(client, t.id, lambda x: x.state in TERMINAL_TEST_STATES)
    if args.json:
        o.print_json(t)
    else:
        print(f"test {t.id}: {'stop sent, ' if t.state not in TERMINAL_TEST_STATES else ''}{t.state}")
    return EXIT_OK


# --- run ---------------------------------------------------------------------------------------


def _transient(exc: ClientError) -> bool:
    """No answer, or an answer a later try may not have (a proxy without replicas, an outage)."""
    return isinstance(exc, ServerUnreachable) or exc.status in TRANSIENT_STATUSES


class _Lost(Exception):
    """The server stayed lost past ``--follow-timeout`` after the launch."""


class _Patience:
    """Requests about a launched test: a transient failure is tried again, with backoff (1 s, doubling
    up to :data:`BACKOFF_MAX_S`), said on stderr, until the failures in a row have lasted ``within`` s
    (then :class:`_Lost`). Any other refusal is raised as it is."""

    def __init__(
        self, test_id: str, within: float, interrupted: asyncio.Event | None = None, command: str = "run"
    ) -> None:
        self.command = command
        self.test_id = test_id
        self.within = within
        self.interrupted = interrupted
        self.since: float | None = None  # the first failure of the current run of them
        self.delay = POLL_S

    def failed(self, exc: ClientError) -> float:
        """A failure: the seconds to wait before the next try, or :class:`_Lost`."""
        if not _transient(exc):
            raise exc
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.delay = POLL_S
        left = self.since + self.within - now
        what = f"{exc.message} (HTTP {exc.status})" if exc.status else exc.message
        if left <= 0:
            raise _Lost(what)
        wait = min(self.delay, left)
        print(f"\noctotui {self.command}: test {self.test_id}: {what}; retrying in {wait:.0f} s "
              f"(giving up in {left:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
        self.delay = min(self.delay * 2, BACKOFF_MAX_S)
        return wait

    def answered(self) -> None:
        if self.since is not None:
            lost = time.monotonic() - self.since
            again = f"the server answers again (after {lost:.0f} s)"
            print(f"octotui {self.command}: test {self.test_id}: {again}", file=sys.stderr)
            self.since = None

    async def ask(self, call: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                value = await call()
            except ClientError as exc:
                wait = self.failed(exc)
                if self.interrupted is None:
                    await asyncio.sleep(wait)
                else:  # Ctrl-C during the wait: the caller sees it at once
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.interrupted.wait(), wait)
                continue
            self.answered()
            return value


class _Progress:
    """One line on stderr: rewritten in place on a terminal, a plain line every few seconds in a log."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_plain = 0.0
        self.shown = False

    def line(self, t: Test) -> str:
        r = t.results
        running = sum(1 for c in t.containers if c.state == "running")
        text = (f"{t.state} {o.span(time.monotonic() - self.started)}  ctrs {running}/{len(t.containers)}  "
                f"users {r.active}  samples {o.count(r.samples)}  hits/s {o.rate(r.throughput)}  "
                f"avg {o.ms(r.avg_ms)} ms  err {o.percent(r.error_percent)}%")  # fmt: skip
        failing = sum(1 for c in t.criteria if c.passed is False)
        if t.criteria:
            text += f"  criteria {failing} failing" if failing else f"  criteria {len(t.criteria)}, none failing"
        if t.warnings:
            text += "  saturated!"
        return text

    def show(self, t: Test) -> None:
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r" + o.clip(self.line(t), o.width(sys.stderr) - 1) + "\x1b[K")
            sys.stderr.flush()
            self.shown = True
        elif now - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = now
            print(self.line(t), file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


async def run(
    client: Client, args: argparse.Namespace, target: Target, spec: TestCreate, local: list[LocalFile]
) -> int:
    """Ctrl-C (or a CI runner's SIGTERM) stops the test, asking nothing, and exits 128 + the signal."""
    interrupted = asyncio.Event()
    caught: list[int] = []
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(sig: int) -> None:
        caught.append(sig)
        interrupted.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        code = await _run(client, args, target, spec, local, interrupted)
        return 128 + caught[0] if code == EXIT_INTERRUPTED and caught else code
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _run(
    client: Client,
    args: argparse.Namespace,
    target: Target,
    spec: TestCreate,
    local: list[LocalFile],
    interrupted: asyncio.Event,
) -> int:
    t = await _launch(client, target, spec, local)  # finished even if Ctrl-C comes meanwhile: then stopped below
    print(_launched_line(t), file=sys.stderr)
    # From here on the test runs whatever happens to this command: losing the server is exit 4, not 2.
    patience = _Patience(t.id, args.follow_timeout, interrupted)
    try:
        return await _follow(client, args, target, spec, t, interrupted, patience)
    except _Lost as exc:
        return _lost(patience, exc)


def _lost(patience: _Patience, exc: _Lost) -> int:
    print(f"\noctotui {patience.command}: lost the server while following test {patience.test_id} for "
          f"{patience.within:g} s: {exc}; the test was launched and may still be running: its outcome is "
          f"unknown (see octotui test {patience.test_id})", file=sys.stderr)  # fmt: skip
    return EXIT_LOST


async def _follow(
    client: Client,
    args: argparse.Namespace,
    target: Target,
    spec: TestCreate,
    t: Test,
    interrupted: asyncio.Event,
    patience: _Patience,
) -> int:
    progress = _Progress()
    wait = POLL_S
    while t.state not in TERMINAL_TEST_STATES and not interrupted.is_set():
        if patience.since is None:
            progress.show(t)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(interrupted.wait(), wait)
        if not interrupted.is_set():
            try:
                t = await client.test(t.id)
            except ClientError as exc:  # a server restarting, a proxy without replicas: keep following
                wait = patience.failed(exc)
            else:
                patience.answered()
                wait = POLL_S
    progress.end()
    if interrupted.is_set() and t.state not in TERMINAL_TEST_STATES:
        patience.interrupted = None  # the stop must go through: retried while the server is lost
        t = await patience.ask(lambda: client.stop_test(t.id))
        print(f"interrupted: stopped test {t.id} (now {t.state})", file=sys.stderr)
        if target.owned:  # the server and agent stop with this command: let the containers end first
            print("waiting for its containers to end before stopping the embedded server…", file=sys.stderr)
            await _until(client, t.id, lambda x: x.state in TERMINAL_TEST_STATES, within=STOP_WAIT_S)
        return EXIT_INTERRUPTED
    t = await _verdict(client, t, spec, patience)
    labels = await patience.ask(lambda: client.labels(t.id)) or []
    errors = await patience.ask(lambda: client.errors(t.id)) or []
    if args.json:
        o.print_json(RunSummary(test=t, labels=labels, errors=errors))
    else:
        print_test(t, labels, errors)
    return _judged(t, "run", spec)
