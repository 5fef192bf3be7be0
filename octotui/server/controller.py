"""The server's state and everything that changes it; routes (``app.py``) only translate HTTP.

State lives in memory (loaded from the store at start) and the store is written on changes only:
providers and agents at once, test and container changes coalesced by a flush every
``flush_interval``; a heartbeat that changes no state writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import HTTPException

from octotui.protocol import (
    TERMINAL_CONTAINER_STATES,
    TERMINAL_TEST_STATES,
    Agent,
    Changes,
    CommandAck,
    ContainerRecord,
    ContainerReport,
    Heartbeat,
    HeartbeatResponse,
    LaunchSpec,
    Placement,
    PlacementItem,
    Provider,
    RegisterRequest,
    RegisterResponse,
    Test,
    TestCreate,
    TokenCreated,
    TokenInfo,
)
from octotui.server.auth import STARTUP_ADMIN, Principal, TokenIndex, hash_token, new_token
from octotui.server.errors import Conflict
from octotui.server.hub import CommandHub, HostWindows, SeriesWindows
from octotui.server.jmx import PlanError, validate_plan
from octotui.server.placement import Candidate, PlacementError, place
from octotui.server.records import (
    AgentRec,
    ChangeLog,
    CommandRec,
    ContainerRec,
    LaunchKeys,
    ProviderRec,
    TestRec,
)
from octotui.server.results import final_results, live_results
from octotui.server.settings import ServerSettings
from octotui.server.store import Snapshot, Store

log = logging.getLogger("octotui.server")

ACTIVE_STATES = frozenset({"pulling", "starting", "running", "stopping"})
STARTING_STATES = frozenset({"pulling", "starting"})
#: How many complete heartbeats may omit a launched container before it counts as lost.
MISSING_LIMIT = 2


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


#: Joins a test's reason and the stops its agents have not confirmed in time.
UNCONFIRMED = "; stop not confirmed"


def _stop_reason(reason: str | None) -> str | None:
    """A reason without the part naming the unconfirmed stops (recomputed each time)."""
    if reason is None:
        return None
    if reason.startswith(UNCONFIRMED[2:]):
        return None
    return reason.split(UNCONFIRMED, 1)[0]


class Controller:
    """Providers, agents, tests and containers, with the rules that move them."""

    def __init__(self, settings: ServerSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.url = f"{settings.scheme}://{settings.host}:{settings.port}"
        self.tokens = TokenIndex(settings.admin_token)
        self.providers: dict[str, ProviderRec] = {}
        self.agents: dict[str, AgentRec] = {}
        self.tests: dict[str, TestRec] = {}
        self.containers: dict[str, ContainerRec] = {}
        #: Live (non-terminal) container ids per agent: heartbeats reconcile against these.
        self.live: dict[str, set[str]] = {}
        self.hosts = HostWindows(settings.samples_window)
        self.series = SeriesWindows(settings.samples_window)
        self.commands = CommandHub(settings.redeliver_after)
        self.started = time.time()
        self._dirty_tests: set[str] = set()
        self._dirty_containers: set[str] = set()
        self._new_commands: list[CommandRec] = []
        self._done_commands: list[str] = []
        self._seen_dirty: set[str] = set()
        self._acked: OrderedDict[str, None] = OrderedDict()  # recently acknowledged command ids
        self._last_point = 0.0
        #: What changed when, for ``GET /changes``: every change of what a listing shows touches it.
        self.feed = ChangeLog()
        #: ``Idempotency-Key``s of launches, so that a retried launch never starts a test twice.
        self.launch_keys = LaunchKeys()
        #: While a heartbeat's reports are applied: the tests to bring up to date afterwards.
        self._held: set[str] | None = None
        #: Agents per (provider id, name): several of one name are flagged (each keeps its identity).
        self._names: dict[tuple[str, str], int] = {}
        #: Launches one at a time: a launch's store write must not let another place on stale state.
        self._launching = asyncio.Lock()

    # --- start-up and persistence --------------------------------------------------------------

    def load(self, snap: Snapshot) -> None:
        """Take the state read from the store at start-up."""
        now = time.time()
        for p in snap.providers:
            self.providers[p.id] = p
            self.tokens.add(p.token_hash, "provider", p.id)
        for token_hash, role, subject in snap.tokens:
            if role == "agent":
                self.tokens.add(token_hash, "agent", subject)
        self.tokens.replace_operators(snap.operators)
        for a in snap.agents:
            # Grace after a restart: agents get offline_after seconds to come back before their
            # containers count as lost, whatever their last heartbeat before the restart.
            a.health_ref = max(a.last_seen or 0.0, now)
            a.status = self._status(a, now)
            self.agents[a.id] = a
            self._count_name(a, +1)
        for t in snap.tests:
            self.tests[t.id] = t
        for c in snap.containers:
            self.containers[c.id] = c
            if c.state not in TERMINAL_CONTAINER_STATES:
                self.live.setdefault(c.agent_id, set()).add(c.id)
            if c.state == "stopping":
                c.stopping_since = now  # its agent gets the whole deadline again after a restart
        for cmd in snap.commands:
            self.commands.push(cmd)
        since = now - self.settings.idempotency_ttl
        self.launch_keys.load([row for row in snap.launch_keys if row[3] >= since])

    async def flush(self) -> None:
        """Write the tests, containers and commands changed since the last flush.

        A write the store refuses as a whole (disk full, locked) keeps every change dirty for the
        next flush. A record that cannot be written (a value the store refuses) does not hold the
        others back: they are written one by one, the bad one is logged and left out.
        """
        if not (self._dirty_tests or self._dirty_containers or self._new_commands or self._done_commands):
            return
        dirty_tests, dirty_containers = self._dirty_tests, self._dirty_containers
        new, done = self._new_commands, self._done_commands
        self._dirty_tests, self._dirty_containers = set(), set()
        self._new_commands, self._done_commands = [], []
        tests = [self.tests[i] for i in dirty_tests if i in self.tests]
        containers = [self.containers[i] for i in dirty_containers if i in self.containers]
        try:
            await self.store.save_changes(tests, containers, new, done)
        except sqlite3.OperationalError:
            self._redirty(dirty_tests, dirty_containers, new, done)
            raise
        except Exception as exc:
            log.warning(
                "store write of %d change(s) refused (%s): writing them one by one",
                len(tests) + len(containers) + len(new),
                exc,
            )
            await self._flush_one_by_one(tests, containers, new, done)

    def _redirty(self, tests: set[str], containers: set[str], new: list[CommandRec], done: list[str]) -> None:
        self._dirty_tests |= tests
        self._dirty_containers |= containers
        self._new_commands[:0] = new
        self._done_commands[:0] = done

    async def _flush_one_by_one(
        self, tests: list[TestRec], containers: list[ContainerRec], new: list[CommandRec], done: list[str]
    ) -> None:
        save = self.store.save_changes
        writes: list[tuple[str, str, Callable[[], Awaitable[None]]]] = [
            *(("test", t.id, functools.partial(save, [t], [])) for t in tests),
            *(("container", c.id, functools.partial(save, [], [c])) for c in containers),
            *(("command", m.id, functools.partial(save, [], [], [m])) for m in new),
        ]
        for i, (kind, key, write) in enumerate(writes):
            try:
                await write()
            except sqlite3.OperationalError:
                self._redirty(
                    {k for kd, k, _ in writes[i:] if kd == "test"},
                    {k for kd, k, _ in writes[i:] if kd == "container"},
                    [m for m in new if any(kd == "command" and k == m.id for kd, k, _ in writes[i:])],
                    done,
                )
                raise
            except Exception as exc:
                log.error("%s %s cannot be stored, left out of the store until it changes: %s", kind, key, exc)
        try:
            await save([], [], [], done)
        except sqlite3.OperationalError:
            self._redirty(set(), set(), [], done)
            raise

    async def save_last_seen(self) -> None:
        """Persist agents' last heartbeat times (now and then, never per heartbeat)."""
        ids, self._seen_dirty = self._seen_dirty, set()
        rows = [(self.agents[i].last_seen, i) for i in ids if i in self.agents]
        if rows:
            await self.store.save_last_seen(rows)

    async def add_operator_token(self, role: str, name: str | None = None) -> str:
        """Create an operator token (``admin`` or ``read-only``) and return its secret."""
        return (await self.create_token(name or _id("token"), role)).token

    # --- operator tokens and audit -------------------------------------------------------------

    async def create_token(self, name: str, role: str) -> TokenCreated:
        """A new named operator token; only its hash is kept, the secret is returned once."""
        if role not in ("admin", "read-only"):
            raise HTTPException(422, f"role must be 'admin' or 'read-only', not {role!r}")
        if name == STARTUP_ADMIN or name in self.tokens.operators:
            raise HTTPException(409, f"a token named {name!r} already exists")
        token = new_token()
        token_hash = hash_token(token)
        now = time.time()
        if not await self.store.add_operator(name, role, token_hash, now):
            raise HTTPException(409, f"a token named {name!r} already exists")
        self.tokens.add_operator(name, role, token_hash, now)
        log.info("operator token %s (%s) created", name, role)
        return TokenCreated(name=name, role=role, token=token)

    def token_list(self) -> list[TokenInfo]:
        """The operator tokens, the start-up admin token first; never their secrets."""
        out = [TokenInfo(name=STARTUP_ADMIN, role="admin")] if self.settings.admin_token else []
        for name, (_, role, created) in sorted(self.tokens.operators.items(), key=lambda kv: kv[1][2]):
            out.append(TokenInfo(name=name, role=role, created_at=_dt(created)))
        return out

    async def revoke_token(self, name: str) -> None:
        """Revoke a named operator token at once (the next request with it gets 401)."""
        if name == STARTUP_ADMIN:
            raise HTTPException(
                409, "the start-up admin token cannot be revoked through the API: restart the server with another"
            )
        if name not in self.tokens.operators:
            raise HTTPException(404, f"no token named {name!r}")
        self.tokens.remove_operator(name)
        await self.store.remove_operator(name)
        log.info("operator token %s revoked", name)

    async def sync_tokens(self) -> None:
        """Take operator tokens changed in the store by another process (``octotui token --data-dir``)."""
        rows = await self.store.operators_if_changed()
        if rows is not None:
            self.tokens.replace_operators(rows)

    def actor(self, who: Principal) -> str:
        """How the audit log names the holder of a token."""
        if who.kind == "provider":
            p = self.providers.get(who.subject)
            return f"provider:{p.name if p else who.subject}"
        if who.kind == "agent":
            return f"agent:{who.subject}"
        return who.subject or who.kind

    async def audit(self, who: Principal, action: str, target: str, detail: str = "", address: str = "") -> None:
        """Record one change: who (token name and role), what, when, from where."""
        await self.store.add_audit(time.time(), self.actor(who), who.kind, action, target, detail, address)

    # --- providers -----------------------------------------------------------------------------

    def provider_or_404(self, provider_id: str) -> ProviderRec:
        p = self.providers.get(provider_id)
        if p is None:
            raise HTTPException(404, f"no provider with id {provider_id!r}")
        return p

    def find_provider(self, key: str) -> ProviderRec:
        """A provider by id or by name (case-insensitive); 404 when neither matches."""
        if key in self.providers:
            return self.providers[key]
        for p in self.providers.values():
            if p.name.lower() == key.lower():
                return p
        raise HTTPException(404, f"no provider with id or name {key!r}")

    def _name_taken(self, name: str, except_id: str | None = None) -> bool:
        return any(p.name.lower() == name.lower() and p.id != except_id for p in self.providers.values())

    def sorted_providers(self) -> list[ProviderRec]:
        """The providers, oldest first (as listed)."""
        return sorted(self.providers.values(), key=lambda p: p.created_at)

    def provider_out(self, p: ProviderRec, token: str = "") -> Provider:
        """A provider as listed; ``token`` only in the answer that made it (creation, rotation)."""
        agents = [a for a in self.agents.values() if a.provider_id == p.id]
        return Provider(
            id=p.id,
            name=p.name,
            token=token,
            created_at=_dt(p.created_at),
            agents=len(agents),
            locations=sorted({a.location for a in agents}),
        )

    async def create_provider(self, name: str) -> tuple[ProviderRec, str]:
        """Make a provider; its registration token is returned here and never again (stored hashed)."""
        if self._name_taken(name):
            raise HTTPException(409, f"a provider named {name!r} already exists")
        token = new_token()
        p = ProviderRec(id=_id("p"), name=name, token_hash=hash_token(token), created_at=time.time())
        await self.store.save_provider(p)  # first: a refused write must leave nothing behind
        self.providers[p.id] = p
        self.tokens.add(p.token_hash, "provider", p.id)
        self.feed.touch("provider", p.id)
        log.info("provider %s created (%s)", p.name, p.id)
        return p, token

    async def rename_provider(self, provider_id: str, name: str) -> ProviderRec:
        p = self.provider_or_404(provider_id)
        if self._name_taken(name, except_id=p.id):
            raise HTTPException(409, f"a provider named {name!r} already exists")
        await self.store.save_provider(dataclasses.replace(p, name=name))
        p.name = name
        self.feed.touch("provider", p.id)
        for a in self.agents.values():
            if a.provider_id == p.id:  # each agent shows its provider's name
                self.feed.touch("agent", a.id)
        for t in self.tests.values():
            if t.provider_id == p.id:  # and each test
                self.feed.touch("test", t.id)
        return p

    async def rotate_provider_token(self, provider_id: str) -> tuple[ProviderRec, str]:
        """Give a provider a new registration token, returned here and never again."""
        p = self.provider_or_404(provider_id)
        token = new_token()
        await self.store.save_provider(dataclasses.replace(p, token_hash=hash_token(token)))
        self.tokens.remove(p.token_hash)
        p.token_hash = hash_token(token)
        self.tokens.add(p.token_hash, "provider", p.id)
        self.feed.touch("provider", p.id)
        log.info("provider %s: registration token rotated", p.name)
        return p, token

    async def delete_provider(self, provider_id: str) -> None:
        p = self.provider_or_404(provider_id)
        agent_ids = [a.id for a in self.agents.values() if a.provider_id == p.id]
        busy = [self.agents[i].name for i in agent_ids if self.live.get(i)]
        if busy:
            raise HTTPException(
                409, f"provider {p.name!r} still runs test containers on {', '.join(sorted(busy))}: stop them first"
            )
        for agent_id in agent_ids:
            self._forget_agent(agent_id)
        self._touch_containers_of(set(agent_ids))
        self.tokens.remove(p.token_hash)
        del self.providers[p.id]
        self.feed.remove("provider", p.id)
        await self.store.delete_provider(p.id, agent_ids)
        log.info("provider %s deleted with %d agent(s)", p.name, len(agent_ids))

    # --- agents --------------------------------------------------------------------------------

    def agent_or_404(self, agent_id: str) -> AgentRec:
        a = self.agents.get(agent_id)
        if a is None:
            raise HTTPException(404, f"no agent with id {agent_id!r}")
        return a

    def _status(self, a: AgentRec, now: float) -> str:
        if a.last_seen is None:
            return "offline"
        age = now - a.last_seen
        if age < self.settings.late_after:
            return "online"
        return "late" if age < self.settings.offline_after else "offline"

    def agent_out(self, a: AgentRec) -> Agent:
        p = self.providers.get(a.provider_id)
        return Agent(
            id=a.id,
            name=a.name,
            provider=a.provider_id,
            provider_name=p.name if p else "",
            location=a.location,
            status=self._status(a, time.time()),
            last_seen=_dt(a.last_seen),
            version=a.version,
            registered_at=_dt(a.registered_at),
            cpu_count=a.cpu_count,
            memory_total=a.memory_total,
            platform=a.platform,
            host=a.host,
            docker=a.docker,
            containers=len(self.live.get(a.id, ())),
            duplicate_name=self._names.get((a.provider_id, a.name), 0) > 1,
            retiring=a.retiring,
        )

    async def register(self, provider_id: str, req: RegisterRequest) -> RegisterResponse:
        """Give an agent its identity; an agent already known (by previous id, else by name) keeps its id."""
        if provider_id not in self.providers:
            raise HTTPException(401, "invalid or revoked token")
        now = time.time()
        a = self._known_agent(provider_id, req)
        token = new_token()
        token_hash = hash_token(token)
        if a is None:
            a = AgentRec(
                id=_id("a"),
                provider_id=provider_id,
                name=req.name,
                location=req.location,
                version=req.version,
                registered_at=now,
                cpu_count=req.cpu_count,
                memory_total=req.memory_total,
                platform=req.platform,
                token_hash=token_hash,
            )
            a.instance = req.instance
            self.agents[a.id] = a
            self._count_name(a, +1)
            log.info("agent %s registered in provider %s as %s", a.name, self.providers[provider_id].name, a.id)
        else:
            self.tokens.remove(a.token_hash)
            if (a.name, a.location) != (req.name, req.location):
                self._touch_containers_of({a.id})
            self._count_name(a, -1)
            a.name, a.location, a.version = req.name, req.location, req.version
            self._count_name(a, +1)
            a.instance = req.instance or a.instance
            a.cpu_count, a.memory_total, a.platform = req.cpu_count, req.memory_total, req.platform
            a.token_hash = token_hash
            # It may have lost what it was handed: hand out its queued commands again.
            self.commands.reset_delivery(a.id)
            log.info("agent %s (%s) registered again: same id, new token", a.name, a.id)
        a.last_seen = a.health_ref = now
        a.status = "online"
        self.feed.touch("agent", a.id)
        self.feed.touch("provider", provider_id)  # its agent count and locations
        self.tokens.add(token_hash, "agent", a.id)
        await self.store.save_agent(a)
        return RegisterResponse(
            agent_id=a.id,
            agent_token=token,
            provider=provider_id,
            heartbeat_interval=self.settings.heartbeat_interval,
            poll_timeout=self.settings.poll_timeout_max,
        )

    def _known_agent(self, provider_id: str, req: RegisterRequest) -> AgentRec | None:
        """The agent of ``provider_id`` a registration is from, or None when it is a new one.

        By previous id, else by instance (the random id of the agent's state dir); by name only for
        agents older than instances. An agent with an instance never takes a record of another.
        """

        def fits(x: AgentRec) -> bool:
            return x.provider_id == provider_id and (req.instance is None or x.instance in (None, req.instance))

        if req.previous_agent_id:
            prev = self.agents.get(req.previous_agent_id)
            if prev is not None and fits(prev):
                return prev
        if req.instance is not None:
            return next(
                (x for x in self.agents.values() if x.provider_id == provider_id and x.instance == req.instance), None
            )
        return next(
            (
                x
                for x in self.agents.values()
                if x.provider_id == provider_id and x.name == req.name and x.instance is None
            ),
            None,
        )

    def _count_name(self, a: AgentRec, step: int) -> None:
        """Count agents per (provider, name); the agents of a name that becomes or stops being shared change."""
        key = (a.provider_id, a.name)
        count = self._names.get(key, 0) + step
        if count > 0:
            self._names[key] = count
        else:
            self._names.pop(key, None)
        if (count == 2 and step > 0) or (count == 1 and step < 0):
            for x in self.agents.values():
                if (x.provider_id, x.name) == key:
                    self.feed.touch("agent", x.id)

    def _forget_agent(self, agent_id: str) -> None:
        """Drop an agent from memory: token revoked, windows and queued commands gone, containers lost."""
        a = self.agents.pop(agent_id)
        self._count_name(a, -1)
        self.tokens.remove(a.token_hash)
        self.hosts.drop(agent_id)
        for cmd in self.commands.drop_agent(agent_id):
            self._done_commands.append(cmd.id)
        for cid in list(self.live.get(agent_id, ())):
            self._set_state(self.containers[cid], "lost", f"agent {a.name} was deleted")
        self.live.pop(agent_id, None)
        self.feed.remove("agent", agent_id)
        self.feed.touch("provider", a.provider_id)

    def _touch_containers_of(self, agent_ids: set[str]) -> None:
        """Containers show their agent's name and location: they change when it is renamed,
        moved or deleted. Rare: one scan of every container is fine."""
        for c in self.containers.values():
            if c.agent_id in agent_ids:
                self.feed.touch("container", c.id)

    async def delete_agent(self, agent_id: str, force: bool = False) -> bool:
        """Forget an agent and revoke its token; True when done now.

        An agent running containers is refused (:class:`Conflict` naming its tests) unless
        ``force``; forced, an agent still online is kept (retiring) while its containers are
        stopped and hand in their results, and forgotten once they all ended (False); an offline
        one is forgotten at once, its containers lost.
        """
        a = self.agent_or_404(agent_id)
        live = [self.containers[cid] for cid in sorted(self.live.get(agent_id, ()))]
        if live and not force:
            tests = [self.tests[t] for t in dict.fromkeys(c.test_id for c in live) if t in self.tests]
            names = ", ".join(f"{t.name!r} ({t.id})" for t in tests)
            raise Conflict(
                f"agent {a.name} ({a.id}) still runs {len(live)} container(s) of {names}: stop them first, or"
                " delete it with force=true (its containers are stopped and their results kept, then it is forgotten)"
            )
        if live and self._status(a, time.time()) != "offline":
            await self.store.save_agent(dataclasses.replace(a, retiring=True))  # a restart keeps it retiring
            a.retiring = True
            for c in live:
                self._stop_container(c)
            self.feed.touch("agent", a.id)
            await self.flush()
            log.info(
                "agent %s (%s) retiring: %d container(s) stopped, forgotten once they ended", a.name, a.id, len(live)
            )
            return False
        await self._delete_agent_now(a)
        return True

    async def _delete_agent_now(self, a: AgentRec) -> None:
        self._forget_agent(a.id)
        self._touch_containers_of({a.id})
        await self.store.delete_agent(a.id)
        await self.flush()
        log.info("agent %s (%s) deleted, its token revoked", a.name, a.id)

    async def retire_agents(self) -> None:
        """Forget the retiring agents whose containers have all ended."""
        for a in [a for a in self.agents.values() if a.retiring and not self.live.get(a.id)]:
            await self._delete_agent_now(a)

    def heartbeat(self, agent_id: str, hb: Heartbeat) -> HeartbeatResponse:
        """Take one heartbeat. Synchronous and store-free: it runs on the hot path."""
        a = self.agent_or_404(agent_id)
        now = time.time()
        a.last_seen = a.health_ref = now
        self._seen_dirty.add(agent_id)
        if a.status != "online":
            log.info("agent %s (%s) is online", a.name, a.id)
            a.status = "online"
        a.host = hb.host
        a.docker = hb.docker
        self.feed.touch("agent", agent_id)
        self.hosts.add(agent_id, [*hb.samples, hb.host] if hb.samples else [hb.host])
        stop: list[str] = []
        reported: set[str] = set()
        # Tests are brought up to date once every report is in: an agent back from an outage
        # reports all its containers, and the first must not end a test the others belong to.
        self._held = set()
        try:
            self._apply_reports(a, hb, now, stop, reported)
        finally:
            held, self._held = self._held, None
        for test_id in held:
            if (t := self.tests.get(test_id)) is not None:
                self._update_test(t)
        return HeartbeatResponse(stop=stop)

    def _apply_reports(self, a: AgentRec, hb: Heartbeat, now: float, stop: list[str], reported: set[str]) -> None:
        agent_id = a.id
        for report in hb.containers:
            reported.add(report.container_id)
            c = self.containers.get(report.container_id)
            if c is None or c.agent_id != agent_id:
                if report.state not in TERMINAL_CONTAINER_STATES:
                    stop.append(report.container_id)  # a stray: no record of it here
                continue
            if self._apply_report(c, report, now):
                stop.append(c.id)
        if hb.complete:
            for cid in list(self.live.get(agent_id, ())):
                c = self.containers[cid]
                if cid in reported or c.state == "pending":
                    continue
                c.missing += 1
                if c.missing < MISSING_LIMIT:
                    continue
                if c.state == "stopping" and c.docker_id is None and c.figures is None:
                    # Stopped while its launch was on its way: the agent never started it.
                    self._set_state(c, "failed", "stopped before it started")
                else:
                    self._set_state(c, "lost", f"agent {a.name} no longer reports this container")

    def _apply_report(self, c: ContainerRec, r: ContainerReport, now: float) -> bool:
        """Fold one report into its record; True when the agent should stop that container."""
        c.missing = 0
        if c.state in ("finished", "failed"):
            # Ended here (e.g. stopped before it started) but still running there.
            return r.state not in TERMINAL_CONTAINER_STATES
        t = self.tests.get(c.test_id)
        # Its test was stopped (or it alone was): until the agent reports it ended, every
        # heartbeat answers with its stop again (a stop may arrive while it is still starting).
        stop_wanted = c.state == "stopping" or (t is not None and t.stop_requested)
        c.cpu_percent, c.memory_bytes, c.pull_progress = r.cpu_percent, r.memory_bytes, r.pull_progress
        if r.docker_id:
            c.docker_id = r.docker_id
        if r.figures is not None:
            c.figures = r.figures
        if r.final is not None and c.final != r.final:
            c.final = r.final
            self._dirty_containers.add(c.id)
        if r.exit_code is not None:
            c.exit_code = r.exit_code
        if c.state == "lost" and r.state not in TERMINAL_CONTAINER_STATES:
            c.error = None  # taken back: "agent … went offline" no longer holds
        if r.error:
            c.error = r.error
        state = r.state
        if stop_wanted and state not in TERMINAL_CONTAINER_STATES:
            state = "stopping"  # a stop is under way: the agent has not honoured it yet
        if state != c.state:
            self._set_state(c, state, r.error)
        c.updated_at = now
        self._touch_container(c)
        ended = t is None or t.state in TERMINAL_TEST_STATES
        return (ended or stop_wanted) and state not in TERMINAL_CONTAINER_STATES

    def _test_changed(self, t: TestRec) -> None:
        self._dirty_tests.add(t.id)
        self.feed.touch("test", t.id)

    def _touch_container(self, c: ContainerRec) -> None:
        # Its test too: the test's live results sum its containers' figures.
        self.feed.touch("container", c.id)
        self.feed.touch("test", c.test_id)

    def _set_state(self, c: ContainerRec, state: str, error: str | None = None) -> None:
        c.state = state
        c.updated_at = time.time()
        if state == "stopping" and c.stopping_since is None:
            c.stopping_since = c.updated_at
        if error:
            c.error = error
        self._dirty_containers.add(c.id)
        self._touch_container(c)
        live = self.live.setdefault(c.agent_id, set())
        was = len(live)
        if state in TERMINAL_CONTAINER_STATES:
            live.discard(c.id)
        else:
            live.add(c.id)
        if len(live) != was and c.agent_id in self.agents:
            self.feed.touch("agent", c.agent_id)  # its count of containers
        t = self.tests.get(c.test_id)
        if t is not None:
            if self._held is not None:
                self._held.add(t.id)
            else:
                self._update_test(t)

    def _update_test(self, t: TestRec) -> None:
        if t.state in TERMINAL_TEST_STATES:
            return
        cs = [self.containers[i] for i in t.container_ids if i in self.containers]
        states = {c.state for c in cs}
        waiting_until = self._awaiting_return(t, cs) if states <= TERMINAL_CONTAINER_STATES else None
        if states <= TERMINAL_CONTAINER_STATES and waiting_until is None:
            self._end_test(t, cs)
            return
        if waiting_until is not None:
            new = t.state  # nothing live: it keeps its state while it waits for lost containers
        elif t.stop_requested:
            new = "stopping"
        elif "running" in states:
            new = "running"
        elif "stopping" in states and "pending" not in states and not states & STARTING_STATES:
            new = "stopping"  # its last live containers were stopped one by one
        elif states & ACTIVE_STATES:
            new = "starting"
        else:
            new = "pending"
        if new != t.state:
            if new == "running" and t.started_at is None:
                t.started_at = time.time()
            t.state = new
            self._test_changed(t)
            log.info("test %s (%s) is %s", t.name, t.id, new)
        reason = self._degraded_reason(cs) or (_stop_reason(t.reason) if t.stop_requested else None)
        if (late := self._unconfirmed_stops(cs)) is not None:
            reason = f"{reason}; {late}" if reason else late
        if reason and waiting_until is not None:
            reason += f"; waiting for the agent to come back (at most {self.settings.return_wait:.0f} s"
            reason += " after the planned end)" if t.planned_duration is not None else " after the loss)"
        if reason != t.reason:
            t.reason = reason
            self._test_changed(t)
            if reason:
                log.warning("test %s (%s) runs %s", t.name, t.id, reason)

    def _awaiting_return(self, t: TestRec, cs: list[ContainerRec]) -> float | None:
        """Until when a test with nothing live left waits for lost containers' agents (None: it does not).

        An offline agent may come back (a network outage, a reboot) with its containers' results;
        the test waits for it until its planned end plus ``return_wait`` (the loss plus
        ``return_wait`` without a planned duration). A stop, or agents back or gone, end it.
        """
        if t.stop_requested:
            return None
        waiting = [
            c
            for c in cs
            # started there (a launch never acknowledged was withdrawn: nothing comes back)
            if c.state == "lost"
            and (c.docker_id is not None or c.figures is not None)
            and (a := self.agents.get(c.agent_id)) is not None
            # away, or back without the engine that could list its containers
            and (a.status != "online" or a.docker is None or not a.docker.available)
        ]
        if not waiting:
            return None
        if t.planned_duration is not None:
            until = (t.started_at or t.created_at) + t.planned_duration + self.settings.return_wait
        else:
            until = max(c.updated_at for c in waiting) + self.settings.return_wait
        return until if time.time() < until else None

    def _unconfirmed_stops(self, cs: list[ContainerRec]) -> str | None:
        """Which containers have not confirmed their stop within ``stop_deadline`` (on which agent,
        since when), or None when none is that late."""
        deadline = self.settings.stop_deadline
        now = time.time()
        late = [
            c
            for c in cs
            if c.state == "stopping" and c.stopping_since is not None and now - c.stopping_since >= deadline
        ]
        if not late:
            return None
        parts = []
        for c in late[:5]:
            a = self.agents.get(c.agent_id)
            since = datetime.fromtimestamp(c.stopping_since or now, UTC).strftime("%H:%M:%S UTC")
            parts.append(f"container {c.index} on {a.name if a else '?'} ({c.agent_id}) since {since}")
        more = f" and {len(late) - 5} more" if len(late) > 5 else ""
        return f"stop not confirmed within {deadline:.0f} s: {', '.join(parts)}{more}"

    def _degraded_reason(self, cs: list[ContainerRec]) -> str | None:
        """Why a test still running has lost part of its load, or None while all is well."""
        bad = [c for c in cs if c.state in ("lost", "failed")]
        if not bad:
            return None
        first = bad[0]
        agent = self.agents.get(first.agent_id)
        where = agent.name if agent else first.agent_id
        lost = sum(1 for c in bad if c.state == "lost")
        failed = len(bad) - lost
        parts = [f"{n} {word}" for n, word in ((lost, "lost"), (failed, "failed")) if n]
        reason = f"degraded: {' and '.join(parts)} of {len(cs)} containers; container {first.index} on {where}"
        return reason + (f": {first.error}" if first.error else f" is {first.state}")

    def _end_test(self, t: TestRec, cs: list[ContainerRec]) -> None:
        now = time.time()
        t.ended_at = now
        bad = [c for c in cs if c.state != "finished"]
        if t.stop_requested or len(bad) < len(cs):
            t.state = "finished"
        else:
            t.state = "failed"
        base = _stop_reason(t.reason)
        stopped = base if t.stop_requested and base and base.startswith("stopped by") else None
        if bad:
            first = bad[0]
            agent = self.agents.get(first.agent_id)
            where = agent.name if agent else first.agent_id
            t.reason = f"{len(bad)} of {len(cs)} containers {'did not finish' if t.state == 'finished' else 'failed'}"
            t.reason += f"; container {first.index} on {where}: {first.state}"
            if first.error:
                t.reason += f": {first.error}"
            if stopped:
                t.reason = f"{stopped}; {t.reason}"
        else:
            t.reason = stopped
        started = t.started_at or t.created_at
        t.results = final_results(cs, now - started if t.started_at else None)
        self._test_changed(t)
        log.info("test %s (%s) %s%s", t.name, t.id, t.state, f" ({t.reason})" if t.reason else "")

    # --- commands ------------------------------------------------------------------------------

    @staticmethod
    def _command(agent_id: str, kind: str, c: ContainerRec, launch: LaunchSpec | None = None) -> CommandRec:
        return CommandRec(
            id=_id("m"),
            agent_id=agent_id,
            kind=kind,
            container_id=c.id,
            test_id=c.test_id,
            created_at=time.time(),
            launch=launch,
        )

    def _queue(self, agent_id: str, kind: str, c: ContainerRec, launch: LaunchSpec | None = None) -> CommandRec:
        cmd = self._command(agent_id, kind, c, launch)
        self.commands.push(cmd)
        self._new_commands.append(cmd)
        return cmd

    def ack(self, agent_id: str, command_id: str, ack: CommandAck) -> None:
        cmd = self.commands.remove(agent_id, command_id)
        if cmd is None:
            if command_id in self._acked:
                return  # a repeated acknowledgement (its first answer was lost)
            raise HTTPException(404, f"no queued command {command_id!r} for agent {agent_id}")
        self._acked[command_id] = None
        while len(self._acked) > 10_000:
            self._acked.popitem(last=False)
        self._done_commands.append(cmd.id)
        c = self.containers.get(cmd.container_id)
        if c is None:
            return
        if not ack.ok:
            if cmd.kind == "launch" and c.state not in TERMINAL_CONTAINER_STATES:
                self._set_state(c, "failed", ack.error or "the agent could not launch the container")
            elif cmd.kind == "stop":
                c.error = ack.error or "the agent could not stop the container"
                self._dirty_containers.add(c.id)
                self._touch_container(c)
        elif cmd.kind == "launch" and c.state == "pending":
            self._set_state(c, "starting")

    # --- tests ---------------------------------------------------------------------------------

    def test_or_404(self, test_id: str) -> TestRec:
        t = self.tests.get(test_id)
        if t is None:
            raise HTTPException(404, f"no test with id {test_id!r}")
        return t

    def container_out(self, c: ContainerRec) -> ContainerRecord:
        a = self.agents.get(c.agent_id)
        return ContainerRecord(
            id=c.id,
            test_id=c.test_id,
            agent=c.agent_id,
            agent_name=a.name if a else "",
            location=a.location if a else "",
            state=c.state,
            index=c.index,
            docker_id=c.docker_id,
            cpu_percent=c.cpu_percent,
            memory_bytes=c.memory_bytes,
            figures=c.figures,
            final=c.final,
            exit_code=c.exit_code,
            error=c.error,
            pull_progress=c.pull_progress,
            updated_at=_dt(c.updated_at),
        )

    def test_out(self, t: TestRec, with_containers: bool = True) -> Test:
        """The test as listed; ``with_containers=False``: without them (the change feed)."""
        cs = [self.containers[i] for i in t.container_ids if i in self.containers]
        results = t.results if t.results is not None else live_results(cs)
        return Test(
            id=t.id,
            name=t.name,
            provider=t.provider_id,
            # the provider's name now (renamed since?); the name it had when it is gone
            provider_name=p.name if (p := self.providers.get(t.provider_id)) else t.provider_name,
            locations=t.locations,
            image=t.image,
            properties=t.properties,
            state=t.state,
            reason=t.reason,
            created_at=_dt(t.created_at),
            started_at=_dt(t.started_at),
            ended_at=_dt(t.ended_at),
            containers=[self.container_out(c) for c in cs] if with_containers else [],
            results=results,
        )

    def listed_tests(self, ended: int | None) -> list[TestRec]:
        """Every test, oldest first; with ``ended``, every live test and only the newest ended ones."""
        tests = list(self.tests.values())
        if ended is not None:
            done = [t for t in tests if t.state in TERMINAL_TEST_STATES]
            keep = {id(t) for t in sorted(done, key=lambda t: t.created_at)[len(done) - ended :]} if ended else set()
            tests = [t for t in tests if t.state not in TERMINAL_TEST_STATES or id(t) in keep]
        return tests

    def changes(self, since: int | None, epoch: str | None, ended: int | None) -> Changes:
        """What changed after revision ``since`` of ``epoch``, or the whole state when that cannot be
        answered exactly (no revision, another epoch, a revision too old or never given out).

        The whole state lists the tests as ``GET /tests?ended=`` does; changes list every test
        that changed, so a client keeping ``ended`` ended tests trims its own copy.
        """
        self.sweep_health(time.time())  # statuses are ages: bring them up to date first
        feed = self.feed
        if since is None or epoch != feed.epoch or not feed.answers(since):
            tests = self.listed_tests(ended)
            return Changes(
                epoch=feed.epoch,
                revision=feed.revision,
                full=True,
                agents=[self.agent_out(a) for a in self.agents.values()],
                providers=[self.provider_out(p) for p in self.sorted_providers()],
                tests=[self.test_out(t, with_containers=False) for t in tests],
                containers=[
                    self.container_out(self.containers[i])
                    for t in tests
                    for i in t.container_ids
                    if i in self.containers
                ],
            )
        out = Changes(epoch=feed.epoch, revision=feed.revision, full=False)
        for kind, key in feed.since(since):
            if kind == "agent":
                if (a := self.agents.get(key)) is not None:
                    out.agents.append(self.agent_out(a))
                else:
                    out.removed_agents.append(key)
            elif kind == "provider":
                if (p := self.providers.get(key)) is not None:
                    out.providers.append(self.provider_out(p))
                else:
                    out.removed_providers.append(key)
            elif kind == "test":
                if (t := self.tests.get(key)) is not None:
                    out.tests.append(self.test_out(t, with_containers=False))
                else:
                    out.removed_tests.append(key)
            elif (c := self.containers.get(key)) is not None:
                out.containers.append(self.container_out(c))
        return out

    def _candidates(self, provider_id: str) -> list[Candidate]:
        now = time.time()
        out = []
        for a in self.agents.values():
            if a.provider_id != provider_id or a.retiring:
                continue
            states = [self.containers[cid].state for cid in self.live.get(a.id, ())]
            reserved = sum(1 for state in states if state in ("pending", "pulling", "starting"))
            host = a.host
            out.append(
                Candidate(
                    id=a.id,
                    name=a.name,
                    location=a.location,
                    online=self._status(a, now) == "online",
                    docker=bool(a.docker and a.docker.available),
                    cpu_count=max(1, len(host.cpu_per_core) if host and host.cpu_per_core else a.cpu_count),
                    cpu_percent=self.hosts.mean_cpu(a.id) or 0.0,
                    memory_total=(host.memory_total if host and host.memory_total else a.memory_total),
                    memory_percent=host.memory_percent if host else 0.0,
                    reserved=reserved,
                    running=len(states) - reserved,
                )
            )
        return out

    def _shutdown_ports(self) -> set[int]:
        return {self.containers[cid].shutdown_port for ids in self.live.values() for cid in ids}

    async def create_test(self, spec: TestCreate, idempotency_key: str | None = None) -> tuple[Test | Placement, bool]:
        """Validate, place and (unless a dry run) queue one launch per container; True with the
        test an earlier launch with the same ``idempotency_key`` made (its answer was lost)."""
        if idempotency_key is None or spec.dry_run:
            async with self._launching:  # placement and ports see every earlier launch
                return await self._create_test(spec, None), False
        keys = self.launch_keys
        key = (idempotency_key, hashlib.sha256(spec.model_dump_json().encode()).hexdigest())
        seen = keys.get(idempotency_key)
        if seen is not None:
            if seen[0] != key[1]:
                raise HTTPException(422, "this Idempotency-Key was used for another launch: use a new key")
            if seen[1] is None:
                raise HTTPException(409, "a launch with this Idempotency-Key is under way: wait for its answer")
            if (made := self.tests.get(seen[1])) is not None:
                return self.test_out(made), True
        keys.begin(*key)
        try:
            async with self._launching:
                return await self._create_test(spec, key), False
        except BaseException:
            if keys.get(idempotency_key) == (key[1], None):
                keys.forget(idempotency_key)  # refused before anything was made: the key may be used again
            raise

    async def _create_test(self, spec: TestCreate, launch_key: tuple[str, str] | None) -> Test | Placement:
        """``launch_key``: (Idempotency-Key, request fingerprint), stored with the test in its one
        transaction: both are made, or neither (then the key may be used again)."""
        if len(spec.plan.encode()) > self.settings.max_plan_bytes:
            raise HTTPException(413, f"the plan is larger than the limit of {self.settings.max_plan_bytes} bytes")
        try:
            validate_plan(spec.plan)
        except PlanError as exc:
            raise HTTPException(422, f"invalid plan: {exc}") from None
        p = self.find_provider(spec.provider)
        try:
            spread = place(
                self._candidates(p.id),
                spec.containers,
                locations=spec.locations,
                memory_per_container=self.settings.container_memory,
                cpu_per_container=self.settings.container_cpu,
            )
        except PlacementError as exc:
            raise HTTPException(409, f"provider {p.name!r}: {exc}") from None
        placement = Placement(
            provider=p.id,
            provider_name=p.name,
            containers=spec.containers,
            items=[PlacementItem(agent=a.id, agent_name=a.name, location=a.location, containers=n) for a, n in spread],
        )
        if spec.dry_run:
            return placement
        properties = dict(spec.properties)
        for key, value in (("users", spec.users), ("duration", spec.duration), ("rampup", spec.rampup)):
            if value is not None:
                properties[key] = str(value)
        t = TestRec(
            id=_id("t"),
            name=spec.name,
            provider_id=p.id,
            provider_name=p.name,
            locations=list(spec.locations or []),
            image=spec.image or self.settings.default_image,
            properties=properties,
            plan=spec.plan,
            state="pending",
            created_at=time.time(),
        )
        used = self._shutdown_ports()
        port = self.settings.shutdown_port_base
        index = 0
        containers: list[ContainerRec] = []
        commands: list[CommandRec] = []
        for candidate, n in spread:
            for _ in range(n):
                while port in used or port == self.settings.port:
                    port += 1
                used.add(port)
                c = ContainerRec(
                    id=_id("c"),
                    test_id=t.id,
                    agent_id=candidate.id,
                    index=index,
                    state="pending",
                    shutdown_port=port,
                    updated_at=t.created_at,
                )
                containers.append(c)
                t.container_ids.append(c.id)
                spec_ = LaunchSpec(
                    test_id=t.id,
                    container_id=c.id,
                    image=t.image,
                    plan=t.plan,
                    properties=properties,
                    shutdown_port=port,
                    index=index,
                    count=spec.containers,
                )
                commands.append(self._command(candidate.id, "launch", c, spec_))
                index += 1
        # Written first, published after: a refused write leaves nothing behind in memory.
        await self.store.create_test(t, containers, commands, launch_key)
        self.tests[t.id] = t
        for c in containers:
            self.containers[c.id] = c
            self.live.setdefault(c.agent_id, set()).add(c.id)
            self._touch_container(c)
            self.feed.touch("agent", c.agent_id)
        for cmd in commands:
            self.commands.push(cmd)
        if launch_key is not None:
            self.launch_keys.done(*launch_key, t.id)
        log.info("test %s (%s): %d container(s) queued on %d agent(s)", t.name, t.id, index, len(spread))
        return self.test_out(t)

    def _stop_container(self, c: ContainerRec) -> None:
        if c.state in TERMINAL_CONTAINER_STATES:
            return
        if c.state == "stopping":
            # Asked again: hand its stop out again now (the first may be lost, or came too early).
            stop = next(
                (x for x in self.commands.pending(c.agent_id) if x.kind == "stop" and x.container_id == c.id), None
            )
            if stop is None or not self.commands.redeliver(c.agent_id, stop.id):
                self._queue(c.agent_id, "stop", c)
            return
        launch = next(
            (x for x in self.commands.pending(c.agent_id) if x.kind == "launch" and x.container_id == c.id), None
        )
        if c.state == "pending" and launch is not None and launch.delivered_at is None:
            # Never handed to the agent: cancel the launch instead of stopping anything.
            self.commands.remove(c.agent_id, launch.id)
            self._done_commands.append(launch.id)
            self._set_state(c, "failed", "stopped before it started")
            return
        self._queue(c.agent_id, "stop", c)
        self._set_state(c, "stopping")

    async def stop_test(self, test_id: str, by: str = "an operator") -> Test:
        t = self.test_or_404(test_id)
        if t.state not in TERMINAL_TEST_STATES:
            t.stop_requested = True
            t.reason = f"stopped by {by} before its planned end"
            self._test_changed(t)
            for cid in t.container_ids:
                if cid in self.containers:
                    self._stop_container(self.containers[cid])
            self._update_test(t)
            await self.flush()
            log.info("test %s (%s): stop requested", t.name, t.id)
        return self.test_out(t)

    async def stop_one(self, test_id: str, container_id: str) -> Test:
        t = self.test_or_404(test_id)
        c = self.containers.get(container_id)
        if c is None or c.test_id != t.id:
            raise HTTPException(404, f"test {test_id} has no container {container_id!r}")
        self._stop_container(c)
        await self.flush()
        return self.test_out(t)

    # --- periodic work -------------------------------------------------------------------------

    def sweep_health(self, now: float) -> None:
        """Take each agent's status from the age of its last heartbeat."""
        for a in self.agents.values():
            status = self._status(a, now)
            if status != a.status:
                log.info("agent %s (%s) is %s", a.name, a.id, status)
                a.status = status
                self.feed.touch("agent", a.id)

    def tick(self) -> None:
        """Recompute agent health, mark containers of offline agents lost, sample live tests."""
        now = time.time()
        self.sweep_health(now)
        for a in self.agents.values():
            if now - a.health_ref >= self.settings.offline_after and self.live.get(a.id):
                for cid in list(self.live[a.id]):
                    c = self.containers[cid]
                    for cmd in self.commands.pending(a.id):
                        if cmd.container_id == cid:
                            self.commands.remove(a.id, cmd.id)
                            self._done_commands.append(cmd.id)
                    self._set_state(c, "lost", f"agent {a.name} went offline")
        if now - self._last_point >= 1.0:
            self._last_point = now
            for t in list(self.tests.values()):
                if t.state not in TERMINAL_TEST_STATES:
                    cs = [self.containers[i] for i in t.container_ids if i in self.containers]
                    if all(c.state in TERMINAL_CONTAINER_STATES for c in cs):
                        self._update_test(t)  # waiting for lost containers' agents: ends when the wait is over
                        continue
                    if t.state == "stopping":
                        self._update_test(t)  # its reason names the stops not confirmed in time
                    if t.state != "pending" and any(c.figures is not None for c in cs):
                        r = live_results(cs)
                        self.series.add(t.id, now, r.throughput, r.avg_ms, r.errors, r.active)

    async def run_background(self, stop: asyncio.Event) -> None:
        """Health ticks and coalesced store writes until ``stop`` is set; a failure is logged, not fatal."""
        interval = max(0.1, min(1.0, self.settings.late_after / 5, self.settings.flush_interval))
        last_seen_saved = keys_pruned = checkpointed = time.monotonic()
        while not stop.is_set():
            try:
                self.tick()
                await self.flush()
                await self.retire_agents()
                await self.sync_tokens()
                if time.monotonic() - last_seen_saved >= 30:
                    last_seen_saved = time.monotonic()
                    await self.save_last_seen()
                if time.monotonic() - checkpointed >= self.settings.checkpoint_interval:
                    checkpointed = time.monotonic()
                    await self.store.checkpoint()
                if time.monotonic() - keys_pruned >= 3600:
                    keys_pruned = time.monotonic()
                    await self.store.forget_launch_keys(time.time() - self.settings.idempotency_ttl)
            except Exception:
                log.exception("background work failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
