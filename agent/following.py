"""Following a running container: its log (JMeter's summariser lines), its JTL (per-label figures),
and its end (the final figures, the verdict, the clean-up of its plan)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time

from agent.dockerbase import DockerBase
from agent.engine import EngineError, NotFound
from agent.jtlfollow import JtlFollower
from agent.records import Tracked, jtl_path, message
from agent.verdicts import judge

log = logging.getLogger("octotui.agent.containers")

#: Seconds between two reads of a running container's JTL (JMeter flushes every row: a sample
#: reaches the next heartbeat within this).
JTL_READ_INTERVAL_S = 1.0


class Following(DockerBase):
    """Follows the containers of :class:`DockerBase` from their start to their end."""

    def _follow(self, tracked: Tracked) -> None:
        self._spawn(self._follow_logs(tracked), f"follow-{tracked.container_id}")
        if tracked.jtl is None:
            tracked.jtl = JtlFollower(jtl_path(self.work_dir, tracked.container_id))
        self._spawn(self._follow_jtl(tracked, tracked.jtl), f"jtl-{tracked.container_id}")

    async def _follow_jtl(self, tracked: Tracked, follower: JtlFollower) -> None:
        """Read the JTL's new rows every second while JMeter runs; :meth:`_finish` reads the rest."""
        failed = False
        while not (tracked.terminal or tracked.finishing or self._closed):
            try:
                labels = follower.label_count
                await asyncio.to_thread(follower.read)
                failed = False
                if follower.label_count > labels and self.on_new_label is not None:
                    self.on_new_label()  # a label the server has not seen: on screen in ~1 s, not up to 5
            except Exception as exc:  # an unreadable file: figures stall, the run goes on
                if not failed:
                    log.warning("cannot read the JTL of %s: %s", tracked.container_id, message(exc))
                failed = True
            await asyncio.sleep(JTL_READ_INTERVAL_S)

    async def _follow_logs(self, tracked: Tracked) -> None:
        assert tracked.docker_id is not None
        since: int | None = None
        for _ in range(100):  # one pass per broken stream; a container's life ends it
            try:
                pending = b""
                async for chunk in self._api().logs(tracked.docker_id, since=since):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        self._feed(tracked, line.decode("utf-8", errors="replace"))
                if pending:
                    self._feed(tracked, pending.decode("utf-8", errors="replace"))
            except Exception as exc:  # the engine went away, or its client was closed under the stream
                log.debug("log stream of %s broke: %s", tracked.container_id, exc)
            if self._closed:
                return
            since = int(time.time())
            try:
                state = (await self._api().inspect(tracked.docker_id))["State"]
            except NotFound:
                await self._end(tracked, None, "container vanished (removed outside the agent)")
                return
            except Exception as exc:
                await self._end(tracked, None, f"docker engine unavailable: {message(exc)}")
                return
            if not state.get("Running") and state.get("Status") != "created":
                await self._end(tracked, int(state.get("ExitCode", -1)), None)
                return
            await asyncio.sleep(1)
        await self._end(tracked, None, "lost the container's log stream")

    def _feed(self, tracked: Tracked, line: str) -> None:
        with self._lock:
            tracked.tracker.feed(line)
            if tracked.tracker.shutdown_port:
                tracked.shutdown_port = tracked.tracker.shutdown_port

    async def _end(self, tracked: Tracked, exit_code: int | None, reason: str | None) -> None:
        """JMeter exited (or the container is gone): results, state, clean-up."""
        with self._lock:
            if tracked.terminal or tracked.finishing or self._closed:
                return
            tracked.finishing = True
        if reason is None and tracked.docker_id and self._engine is not None:
            try:
                await self._engine.remove(tracked.docker_id)
            except EngineError as exc:
                # NotFound, or 409 "removal already in progress": someone else removed it (docker rm -f
                # kills, then removes), which is not JMeter's own end
                removed_elsewhere = isinstance(exc, NotFound) or "already in progress" in str(exc)
                if not removed_elsewhere:
                    log.warning("cannot remove container %s: %s", tracked.container_id, message(exc))
                elif exit_code != 0 and not tracked.stop_requested:
                    reason = f"container vanished (removed outside the agent, exit code {exit_code})"
        await asyncio.to_thread(self._finish, tracked, exit_code, reason)

    def _finish(self, tracked: Tracked, exit_code: int | None, reason: str | None) -> None:
        """The file side of an end (in a thread): the JTL's figures, JMeter's errors, the state file."""
        root = self.work_dir / tracked.container_id
        if tracked.jtl is not None:
            try:
                tracked.jtl.read(final=True)  # the rows written since the last read: the final figures
            except Exception as exc:
                log.warning("cannot read the JTL of %s: %s", tracked.container_id, message(exc))
        verdict = judge(tracked, root, exit_code, reason)
        shutil.rmtree(root / "plan", ignore_errors=True)
        with self._lock:
            tracked.final = verdict.final
            tracked.exit_code = exit_code
            tracked.error = verdict.error
            tracked.state = verdict.state
            tracked.cpu_percent = 0.0
            tracked.finishing = False
        if verdict.state == "finished":
            log.info("container %s finished (exit %s, %s samples)", tracked.container_id, exit_code,
                     verdict.final.samples if verdict.final else 0)  # fmt: skip
        else:
            log.warning("container %s failed: %s", tracked.container_id, verdict.error)
        self.records.save()
        self._prune_files()
