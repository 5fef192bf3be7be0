"""Live data exchanged between replicas: agents' last heartbeat, latest host sample, containers' live
figures, the per-label figures reported (each changed label's row, as stored), and monitors' samples
and states. Never written per heartbeat: each replica publishes what came through it in ONE statement
per :data:`LIVE_EVERY` seconds (an UNLOGGED table, one row per replica and slot) and takes what is
newer than its own from the others'.

Labels: an agent sends a label only when it changed, cumulative, so a changed label's row replaces the
others' copy (``LabelBook.put_row``), as a restart takes the stored ones back; at most
:data:`MAX_LABEL_ROWS` rows a publication (the rest go in the next ones). Monitors: the samples taken
since the last publication (at most :data:`MAX_MONITOR_SAMPLES` a monitor) go into the others'
windows only: thresholds are judged, alarms raised and series kept with tests by the replica the
samples reached (``domain/alarms.py``), once."""

from __future__ import annotations

import json
import time
import zlib
from typing import TYPE_CHECKING, Any

from octotui.protocol import DockerInfo, HostSample, JMeterFigures
from octotui.server.domain import seriesshare
from octotui.server.labelbook import LabelBook, from_lists, to_lists
from octotui.server.replica.reader import Reader

if TYPE_CHECKING:
    from octotui.server.domain.state import ServerState


#: Label rows (one container's label) a publication holds at most: 16 containers x 200 labels all
#: changing every second fit in one.
MAX_LABEL_ROWS = 5000
#: Samples of one monitor a publication holds at most (the newest).
MAX_MONITOR_SAMPLES = 60


class Live:
    """This replica's side of the exchange: what it published last, and what it took from the others."""

    def __init__(self, s: ServerState, reader: Reader, replica_id: str) -> None:
        self.s = s
        self.reader = reader
        self.id = replica_id
        self._seq = 0
        self._seen: dict[str, int] = {}
        self._published: dict[str, float] = {}
        self._live_containers: dict[str, set[str]] = {}
        #: last_seen of agents as taken from another replica: those are not published again here.
        self._remote_seen: dict[str, float] = {}
        #: Containers with labels reported here and not published yet (``LabelBook.outgoing``).
        self.labels_out: set[str] = set()
        #: Per monitor: the newest sample ts published, and taken from another replica.
        self._mon_published: dict[str, float] = {}
        self._mon_remote: dict[str, float] = {}
        #: Per monitor: (state, error) as last published or taken.
        self._mon_state: dict[str, tuple[str, str | None]] = {}

    async def exchange(self) -> None:
        """Publish what came through this replica since the last time; take the others' news. Only
        the gathering and the taking run on the event loop: encoding, the statements and decoding run
        on the reader's thread, in one hop."""
        for data in await self.reader._run(self._swap, self.gather()):
            self.take(data)

    def _swap(self, data: dict[str, Any] | None) -> list[dict[str, Any]]:
        """On the reader's thread: publish ``data`` (when any); the others' publications not taken yet."""
        if data is not None:
            self._seq += 1
            self.reader.publish(self.id, self._seq, encode(data))
        out = []
        for replica, seq, blob in self.reader.live(self.id):
            if seq > self._seen.get(replica, 0):
                self._seen[replica] = seq
                out.append(decode(blob))
        return out

    def gather(self) -> dict[str, Any] | None:
        """What came through this replica since the last publication (None: nothing)."""
        s = self.s
        agents_out: dict[str, Any] = {}
        containers_out: dict[str, Any] = {}
        for a in s.agents.values():
            seen = a.last_seen
            if seen is None or seen <= self._published.get(a.id, 0.0) or seen == self._remote_seen.get(a.id):
                continue
            self._published[a.id] = seen
            agents_out[a.id] = [
                seen,
                a.host.model_dump(mode="json") if a.host else None,
                a.docker.model_dump(mode="json") if a.docker else None,
            ]
            # Its live containers, and once more those that ended since (their last report's figures).
            live = set(s.live.get(a.id, ()))
            ended = self._live_containers.get(a.id, set()) - live
            self._live_containers[a.id] = live
            for cid in live | ended:
                if (c := s.containers.get(cid)) is not None:
                    containers_out[cid] = [c.updated_at, c.cpu_percent, c.memory_bytes, c.pull_progress, c.docker_id,
                                           c.figures.model_dump(mode="json") if c.figures else None]  # fmt: skip
        data = {"agents": agents_out, "containers": containers_out}
        if labels_out := self._gather_labels():
            data["labels"] = labels_out
        if monitors_out := self._gather_monitors():
            data["monitors"] = monitors_out
        if series_out := seriesshare.gather(s):  # tests' timelines: the lease holder's new points
            data["series"] = series_out
        return data if any(data.values()) else None

    def _gather_labels(self) -> dict[str, list[list[Any]]]:
        """Rows of the labels changed through this replica: container id -> [label, packed figures,
        error counts (JSON)], at most :data:`MAX_LABEL_ROWS` (the others wait for the next one)."""
        out: dict[str, list[list[Any]]] = {}
        room = MAX_LABEL_ROWS
        for cid in list(self.labels_out):
            book = self.s.labels.get(cid)
            if book is None or not book.outgoing:
                self.labels_out.discard(cid)
                continue
            if room <= 0:
                break
            taken = list(book.outgoing)[:room]
            book.outgoing.difference_update(taken)
            if not book.outgoing:
                self.labels_out.discard(cid)
            room -= len(taken)
            rows = out[cid] = []
            for label in taken:
                figures, errors = book.row(label)
                rows.append([label, figures, errors])
        return out

    def _gather_monitors(self) -> dict[str, list[Any]]:
        """Monitors whose samples or state came through this replica: id -> [state, error, samples]."""
        out: dict[str, list[Any]] = {}
        for m in self.s.monitors.by_id.values():
            state = (m.state, m.error)
            last = self._mon_published.get(m.id, float("-inf"))
            fresh = m.last_ts is not None and m.last_ts > last and m.last_ts != self._mon_remote.get(m.id)
            if not fresh and self._mon_state.get(m.id, state) == state:
                continue
            self._mon_state[m.id] = state
            samples: list[Any] = []
            if fresh:
                assert m.last_ts is not None
                self._mon_published[m.id] = m.last_ts
                samples = [[ts, v] for ts, v in m.samples(last) if ts > last][-MAX_MONITOR_SAMPLES:]
            out[m.id] = [m.state, m.error, samples]
        return out

    def take(self, data: dict[str, Any]) -> None:
        """Another replica's live data into memory (what is newer than this one's)."""
        from octotui.server.domain import agents, lifecycle

        s = self.s
        now = time.time()
        for agent_id, (seen, host, docker) in data.get("agents", {}).items():
            a = s.agents.get(agent_id)
            if a is None or (a.last_seen is not None and a.last_seen >= seen):
                continue
            a.last_seen = seen
            a.health_ref = max(a.health_ref, seen)
            self._remote_seen[agent_id] = seen
            if host is not None:
                a.host = HostSample.model_validate(host)
                s.hosts.add(agent_id, [a.host])
            if docker is not None:
                a.docker = DockerInfo.model_validate(docker)
            a.status = agents.status(s, a, now)
            s.feed.touch("agent", agent_id)
        for cid, (updated, cpu, mem, pull, docker_id, figures) in data.get("containers", {}).items():
            c = s.containers.get(cid)
            if c is None or c.updated_at > updated:
                continue
            c.cpu_percent, c.memory_bytes, c.pull_progress = cpu, mem, pull
            c.docker_id = docker_id or c.docker_id
            if figures is not None:
                c.figures = JMeterFigures.model_validate(figures)
            c.updated_at = updated
            lifecycle.touch_container(s, c)
        for cid, rows in data.get("labels", {}).items():
            self._take_labels(cid, rows)
        for mid, (state, error, samples) in data.get("monitors", {}).items():
            if (m := s.monitors.by_id.get(mid)) is None:
                continue
            m.state, m.error = state, error
            self._mon_state[mid] = (state, error)
            for ts, values in samples:
                m.add(ts, values)  # into the window only: the replica they reached judged them
            if m.last_ts is not None:
                self._mon_remote[mid] = m.last_ts
        if "series" in data:
            seriesshare.take(s, data["series"])

    def _take_labels(self, cid: str, rows: list[list[Any]]) -> None:
        """Another replica's rows of a container's labels into this one's book (stored by that one)."""
        s = self.s
        book = s.labels.get(cid)
        if book is None:
            # Kept even for a container whose launch is not read here yet (a label is sent again only
            # when it changes); one never known is dropped by the next full save (``labels.save``).
            book = s.labels[cid] = LabelBook()
        for label, figures, errors in rows:
            book.put_row(label, figures, errors)
        if (c := s.containers.get(cid)) is not None:
            s.feed.touch("test", c.test_id)


def encode(data: dict[str, Any]) -> bytes:
    """A publication as stored: zlib'd JSON, labels' packed figures as numbers (``to_lists``)."""
    labels = data.get("labels")
    if labels:
        data = {**data, "labels": {cid: [[label, to_lists(fig) if fig else None, errors] for label, fig, errors in rows]
                                   for cid, rows in labels.items()}}  # fmt: skip
    return zlib.compress(json.dumps(data).encode(), 1)


def decode(blob: bytes) -> dict[str, Any]:
    """:func:`encode` back (a label row that does not decode is left out)."""
    data: dict[str, Any] = json.loads(zlib.decompress(blob))
    for rows in data.get("labels", {}).values():
        kept = []
        for label, figures, errors in rows:
            try:
                kept.append([label, from_lists(figures) if figures else None, errors])
            except (ValueError, TypeError):
                continue
        rows[:] = kept
    return data
