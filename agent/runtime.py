"""The agent's life: register once, then heartbeat, long-poll for commands and run them.

Three tasks share one event loop: the host sampler, the heartbeat (latest host sample plus those
taken since the previous beat, the Docker engine's state, every container), and the long poll
(commands executed concurrently, acknowledged with their outcome, never twice for one id); a
fourth sends ended containers' JTLs to the server (:mod:`agent.uploads`).
Everything blocking (psutil, files) runs in threads; the Docker engine is reached asynchronously.
The server is reached through :mod:`agent.link` (its errors say what went wrong), paced by
:mod:`agent.pacing`; what is kept across restarts is :mod:`agent.state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import random
import time
from collections import deque
from typing import Any, assert_never

from agent.containers import DockerRuntime
from agent.host import HostSampler, machine_id
from agent.link import (
    AuthRefused,
    ConnectionCut,
    Gone,
    LinkError,
    Refused,
    ServerLink,
    ServerUnreachable,
    UnexpectedAnswer,
)
from agent.monitors import MonitorScheduler
from agent.pacing import IdleLimit, Reachability, backoff_delay
from agent.records import LaunchError
from agent.settings import AgentSettings
from agent.state import CommandLog, Identity, check_writable, load_instance
from agent.testfiles import TestFiles
from agent.uploads import Uploader
from octotui.protocol import (
    TERMINAL_CONTAINER_STATES,
    VERSION,
    Command,
    CommandAck,
    Heartbeat,
    HostSample,
    RegisterRequest,
)

log = logging.getLogger("octotui.agent")


class FatalError(Exception):
    """The agent cannot go on (e.g. its provider token is refused); ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 3) -> None:
        super().__init__(message)
        self.code = code


# --- the agent -------------------------------------------------------------------------------


class AgentRuntime:
    """One agent: identity, host sampling, heartbeats, commands. Run it with :meth:`run`."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.identity_path = settings.state_dir / "identity.json"
        self.instance_path = settings.state_dir / "instance"
        self.instance: str | None = None
        self.identity: Identity | None = None
        self.docker: DockerRuntime | None = None
        self.uploads: Uploader | None = None
        self.sampler: HostSampler | None = None
        self.samples: deque[HostSample] = deque(maxlen=600)
        self.commands = CommandLog(settings.state_dir / "commands.json")
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.link = ServerLink(settings)
        self.pace = Reachability(settings.server)
        #: Set when something the server should see at once happened (a container was launched or
        #: stopped): the heartbeat goes out now instead of at the end of its interval.
        self._beat_now = asyncio.Event()
        self._last_label_beat = 0.0
        self._reregister = asyncio.Lock()
        #: Monitors of the servers under test the server assigned (none until it says so).
        self.monitors = MonitorScheduler()

    # --- registration -------------------------------------------------------------------------

    def _register_request(self, previous: str | None) -> RegisterRequest:
        assert self.sampler is not None
        return RegisterRequest(
            name=self.settings.name,
            location=self.settings.location,
            version=VERSION,
            cpu_count=self.sampler.cpu_count,
            memory_total=self.sampler.memory_total,
            platform=f"{platform.system()} {platform.release()} {platform.machine()}",
            previous_agent_id=previous,
            instance=self.instance,
            machine_id=machine_id(),
        )

    async def _register(self, previous: str | None) -> Identity:
        """Register with the provider token, retrying while the server is unreachable."""
        token = self.settings.token
        if not token:
            raise FatalError(
                f"no identity for {self.settings.server} in {self.settings.state_dir} and no --token "
                "(OCTOTUI_TOKEN) to register with",
                code=2,
            )
        body = self._register_request(previous)
        attempt = 0
        while True:
            try:
                answer = await self.link.register(token, body)
                break
            except ServerUnreachable as exc:
                delay = backoff_delay(attempt)
                attempt += 1
                self.pace.unreached(exc, delay)
                await asyncio.sleep(delay)
            except AuthRefused as exc:
                self.pace.reached()
                raise FatalError(f"the server refused the provider token: {exc.detail}") from None
            except Refused as exc:
                self.pace.reached()
                raise FatalError(str(exc), code=2) from None
            except UnexpectedAnswer as exc:
                self.pace.reached()
                raise FatalError(str(exc)) from exc
        self.pace.reached()
        identity = Identity(
            agent_id=answer.agent_id,
            agent_token=answer.agent_token,
            server=self.settings.server,
            heartbeat_interval=answer.heartbeat_interval,
            poll_timeout=answer.poll_timeout,
        )
        try:
            await asyncio.to_thread(identity.save, self.identity_path)
        except OSError as exc:
            raise FatalError(self._unwritable(exc), code=2) from None
        if previous and previous != answer.agent_id:
            log.warning("registered again as %s (was %s)", answer.agent_id, previous)
        else:
            log.info("registered as %s (%s, location %s)", answer.agent_id, self.settings.name,
                     self.settings.location)  # fmt: skip
        return identity

    def _current_identity(self) -> Identity:
        """This agent's identity now (a registration again replaces it)."""
        assert self.identity is not None
        return self.identity

    def _unwritable(self, exc: OSError) -> str:
        where = exc.filename or self.settings.state_dir
        return f"cannot write the agent's state at {where}: {exc.strerror or exc}"

    def _prepare_state(self) -> str:
        """Check the state dir can be written and read this dir's instance id; FatalError when it cannot."""
        try:
            check_writable(self.identity_path)
            return load_instance(self.instance_path)
        except OSError as exc:
            raise FatalError(self._unwritable(exc), code=2) from None

    async def _ensure_identity(self) -> Identity:
        self.instance = await asyncio.to_thread(self._prepare_state)
        stored = await asyncio.to_thread(Identity.load, self.identity_path)
        # Any URL of the list: they are replicas of one server, listed in whatever order (an
        # operator reordering --server to spread agents keeps each agent's identity).
        if stored is not None and stored.server in self.settings.server_urls:
            log.info("agent %s (identity from %s)", stored.agent_id, self.identity_path)
            return stored
        if stored is not None:
            log.info("identity in %s is for %s: registering with %s", self.identity_path, stored.server,
                     self.settings.server)  # fmt: skip
        return await self._register(previous=None)

    async def _refused(self, token_used: str) -> None:
        """The agent token was refused: register again, keeping the id when the server still knows it."""
        async with self._reregister:
            assert self.identity is not None
            if self.identity.agent_token != token_used:
                return  # another task registered again meanwhile
            log.warning("the server refused this agent's token: registering again")
            previous = self.identity.agent_id
            self.identity = await self._register(previous=previous)
            if self.docker is not None:
                self.docker.set_agent_id(self.identity.agent_id)

    async def _refresh_info(self) -> None:
        """Learn the server's heartbeat interval and offline threshold (they may have changed since registration)."""
        assert self.identity is not None
        with contextlib.suppress(LinkError):
            timing = await self.link.info(self.identity)
            self.identity.heartbeat_interval = timing.heartbeat_interval
            if timing.offline_after is not None:
                self.pace.offline_after = timing.offline_after

    # --- loops --------------------------------------------------------------------------------

    async def _sample_loop(self) -> None:
        assert self.sampler is not None
        interval = self.settings.interval
        next_at = time.monotonic()
        while True:
            try:
                self.samples.append(await asyncio.to_thread(self.sampler.sample))
            except Exception as exc:
                log.warning("host sampling failed: %s", exc)
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # fell behind (suspended machine): do not burst to catch up
                next_at = now + interval
            await asyncio.sleep(next_at - now)

    async def _check_engine(self) -> None:
        assert self.docker is not None
        info, changed = await self.docker.check_engine()
        if not changed:
            return
        if info.available:
            log.info("docker engine available (version %s)", info.version)
            try:
                found = await self.docker.adopt()
            except Exception as exc:
                log.warning("cannot list this agent's containers: %s", exc)
            else:
                if found:
                    log.info("following %d container(s) found again: %s", len(found), ", ".join(found))
        else:
            log.warning("docker engine unavailable: %s (monitoring goes on)", info.error)

    def _requeue(self, taken: list[HostSample]) -> None:
        """Keep unsent readings for the next beat (the newest win when the window is full)."""
        self.samples = deque([*taken, *self.samples], maxlen=self.samples.maxlen)

    async def _next_beat(
        self, marks: dict[str, int], monitor_marks: dict[str, int]
    ) -> tuple[Heartbeat, list[HostSample]]:
        """The heartbeat to send now, and the host samples it takes from the window; ``marks`` gets
        the label epochs to acknowledge if the server answers it, ``monitor_marks`` the monitors'
        samples it carries (kept until then)."""
        assert self.docker is not None and self.sampler is not None
        reports = await self.docker.reports(marks)
        taken = list(self.samples)
        self.samples.clear()
        if not taken:
            taken = [await asyncio.to_thread(self.sampler.sample)]
        info = self.docker.info
        # without an engine the agent cannot list its containers: the list is then not the whole truth
        beat = Heartbeat(
            host=taken[-1], samples=taken[:-1], docker=info, containers=reports, complete=info.available,
            monitors=self.monitors.take(monitor_marks), monitor_revision=self.monitors.revision,
        )  # fmt: skip
        return beat, taken

    async def _heartbeat_loop(self) -> None:
        assert self.identity is not None and self.docker is not None
        attempt = 0
        while True:
            await self._check_engine()
            marks: dict[str, int] = {}
            monitor_marks: dict[str, int] = {}
            beat, taken = await self._next_beat(marks, monitor_marks)
            token = self.identity.agent_token
            try:
                answer = await self.link.heartbeat(self.identity, beat)
            except (AuthRefused, Gone):
                self._requeue(taken)
                await self._refused(token)
                continue
            except (ServerUnreachable, Refused) as exc:
                self._requeue(taken)
                self.pace.unreached(exc, delay := self.pace.beat_retry_delay(attempt, self.identity.heartbeat_interval))
                attempt += 1
                await self.pace.pause(delay)
                continue
            self.pace.reached()
            attempt = 0
            self.monitors.delivered(monitor_marks)
            self.monitors.apply(answer.monitors, answer.monitor_revision)
            # only now are its labels known to the server: a lost beat leaves them for the next one
            await asyncio.to_thread(self.docker.delivered, [r.container_id for r in beat.containers], marks)
            if answer.labels_wanted:
                # after the acknowledgement above, so that it cannot mark them delivered again
                again = self.docker.resend_labels(answer.labels_wanted)
                if again:
                    log.info("the server wants every label of %s again", ", ".join(again))
            if self.uploads is not None:  # the server knows these ended: their JTLs can go up
                await self.uploads.ended(
                    r.container_id for r in beat.containers if r.state in TERMINAL_CONTAINER_STATES
                )
            for container_id in answer.stop:
                log.info("the server asks to stop container %s", container_id)
                await self.docker.stop(container_id, 20.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), timeout=self.identity.heartbeat_interval)
            self._beat_now.clear()

    def _new_label(self) -> None:
        """A JTL showed a new label: heartbeat now rather than in up to one interval, at most once a
        second (measured: a new label reached the screen in 3.2 s with 5 s heartbeats, 0.95 s with 1 s)."""
        now = time.monotonic()
        if now - self._last_label_beat >= 1.0:
            self._last_label_beat = now
            self._beat_now.set()

    async def _poll_loop(self) -> None:
        assert self.identity is not None
        attempt = 0
        # A "fresh" poll gets every command not yet acknowledged, even one handed out moments ago:
        # the first poll after a start, and the first after a failed poll (whose answer, maybe
        # carrying commands, was lost on the way; a command delivered twice still runs once, by id).
        fresh = True
        idle = IdleLimit()
        while True:
            wait = idle.wait(self.identity.poll_timeout)
            token = self.identity.agent_token
            opened = time.monotonic()
            try:
                commands = await self.link.poll(self.identity, wait, fresh)
            except (AuthRefused, Gone):
                await self._refused(token)
                fresh = True
                continue
            except (ServerUnreachable, Refused) as exc:
                fresh = True
                held = time.monotonic() - opened
                if isinstance(exc, ConnectionCut) and self.pace.reachable and 1.0 <= held < wait - 0.5:
                    # cut while held open, the server otherwise answering: an idle timeout on the way
                    noticed = idle.cut(held)
                    log.log(logging.INFO if noticed else logging.DEBUG,
                            "long poll cut after %.1f s (%s): polling again, at most %.1f s each", held, exc,
                            idle.cap)  # fmt: skip
                    await asyncio.sleep(random.uniform(0.05, 0.3))
                    continue
                delay = backoff_delay(attempt)
                attempt += 1
                self.pace.unreached(exc, delay)
                await self.pace.pause(delay)
                continue
            except UnexpectedAnswer as exc:
                log.warning("unreadable commands from server: %s", exc)
                fresh = True
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1
                continue
            self.pace.reached()
            attempt = 0
            fresh = False
            idle.answered()
            for command in commands:
                self._spawn(self._execute(command))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- commands -----------------------------------------------------------------------------

    async def _execute(self, command: Command) -> None:
        """Run one command once, however often it is delivered, and acknowledge its outcome."""
        done = self.commands.get(command.id)
        if done is not None:
            await self._ack(command.id, done)
            return
        if command.id in self._inflight:
            return
        self._inflight.add(command.id)
        assert self.docker is not None
        try:
            match command.kind:
                case "launch":
                    log.info("launch of container %s (test %s)", command.container_id, command.test_id)
                    try:
                        await self.docker.launch(command)
                        ack = CommandAck(ok=True)
                    except LaunchError as exc:
                        ack = CommandAck(ok=False, error=str(exc))
                case "stop":
                    log.info("stop of container %s (test %s)", command.container_id, command.test_id)
                    outcome = await self.docker.stop(command.container_id, command.grace_s)
                    log.debug("stop of %s: %s", command.container_id, outcome)
                    ack = CommandAck(ok=True)
                case _:
                    assert_never(command.kind)
            await asyncio.to_thread(self.commands.add, command.id, ack)
        except Exception as exc:
            log.exception("command %s (%s) failed", command.id, command.kind)
            ack = CommandAck(ok=False, error=f"agent error: {exc}")
        finally:
            self._inflight.discard(command.id)
        await self._ack(command.id, ack)
        self._beat_now.set()  # the container's new state reaches the server now, not in up to 5 s

    async def _ack(self, command_id: str, ack: CommandAck) -> None:
        assert self.identity is not None
        for attempt in range(5):
            try:
                await self.link.ack(self.identity, command_id, ack)
            except ServerUnreachable:
                await self.pace.pause(backoff_delay(attempt))
                continue
            except Gone as exc:
                log.debug("ack of %s: %s", command_id, exc.detail)
            except Refused as exc:
                log.warning("ack of %s refused: %s", command_id, exc.detail)
            return
        log.info("could not acknowledge command %s yet: the server will hand it out again", command_id)

    # --- run ----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set; the exit status (0 for a requested stop)."""
        settings = self.settings
        try:
            settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            settings.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("cannot create the state directory: %s", exc)
            return 2
        self.sampler = await asyncio.to_thread(HostSampler, settings.state_dir)
        sampling = asyncio.create_task(self._sample_loop())
        stopping: asyncio.Task[Any] = asyncio.create_task(stop.wait())
        try:
            registering = asyncio.create_task(self._ensure_identity())
            await asyncio.wait({registering, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not registering.done():
                registering.cancel()
                return 0
            try:
                self.identity = registering.result()
            except FatalError as exc:
                log.error("%s", exc)
                return exc.code
            await self._refresh_info()
            self.docker = DockerRuntime(
                settings.work_dir,
                self.identity.agent_id,
                settings.state_dir / "containers.json",
                settings.network_mode,
                instance=self.instance,
                files=TestFiles(self.link, self._current_identity, settings.work_dir),
            )
            self.docker.on_new_label = self._new_label
            self.uploads = Uploader(
                self.link, self._current_identity, settings.work_dir, settings.state_dir / "uploads.json",
                keep_results=settings.keep_results,
            )  # fmt: skip
            return await self._serve(stopping)
        finally:
            for task in (sampling, stopping, *self._tasks):
                task.cancel()
            if self.docker is not None:
                await self.docker.aclose()
            with contextlib.suppress(Exception):
                await self.monitors.aclose()
            with contextlib.suppress(Exception):
                await self.link.aclose()

    async def _serve(self, stopping: asyncio.Task[Any]) -> int:
        """Heartbeat and poll until ``stopping`` ends or a loop fails; the exit status."""
        assert self.uploads is not None
        loops: set[asyncio.Task[Any]] = {
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(self._poll_loop()),
            asyncio.create_task(self.uploads.run()),
        }
        done, _ = await asyncio.wait({*loops, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in loops:
            task.cancel()
        for task in loops & done:
            failure = task.exception()
            if isinstance(failure, FatalError):
                log.error("%s", failure)
                return failure.code
            if failure is not None:
                log.error("agent loop failed: %r", failure)
                return 1
        return 0
