"""The tables' columns, records as rows and rows as records: the one place that knows the column order of the tests,
containers and commands tables, and how changed rows are written (upserts keyed by id)."""

from __future__ import annotations

import json
from typing import Any

from octotui.protocol import CriterionResult, FinalResults, JMeterFigures, LaunchSpec, TestResults
from octotui.server.records import AgentRec, CommandRec, ContainerRec, FileRec, FileUse, Share, TestRec

TEST_COLUMNS = (
    "id", "name", "provider_id", "provider_name", "locations", "image", "properties", "plan", "state", "reason",
    "created_at", "started_at", "ended_at", "stop_requested", "results", "container_ids", "criteria", "verdict",
    "warnings",
)  # fmt: skip
CONTAINER_COLUMNS = (
    "id", "test_id", "agent_id", "idx", "state", "shutdown_port", "docker_id", "exit_code", "error", "final",
    "figures", "updated_at",
)  # fmt: skip
COMMAND_COLUMNS = ("id", "agent_id", "kind", "container_id", "test_id", "created_at", "launch", "grace_s")
AGENT_COLUMNS = (
    "id", "provider_id", "name", "location", "version", "registered_at", "cpu_count", "memory_total", "platform",
    "token_hash", "last_seen", "instance", "retiring", "drained", "machine_id",
)  # fmt: skip

#: One label of one container: its packed figures (``labelbook.pack``) and error counts (JSON).
LABEL_COLUMNS = ("container_id", "label", "test_id", "figures", "errors")
LabelRow = tuple[str, str, str, bytes | None, str | None]

#: A test's timeline: bucket width, count of merged points, the points packed (``timeline.py``).
SERIES_COLUMNS = ("test_id", "width", "coarse", "points")
SeriesRow = tuple[str, float, int, bytes]

#: A container's uploaded JTL (its file: ``results/<test id>/<container id>.jtl.gz``): its size and
#: SHA-256 as sent (gzip), its header line, when it was stored and when retention removed it.
JTL_COLUMNS = ("container_id", "test_id", "size", "sha256", "header", "stored_at", "pruned_at")
JtlRow = tuple[str, str, int, str, str, float, float | None]


#: An uploaded file (its bytes: ``files/<id>``).
FILE_COLUMNS = ("id", "name", "size", "sha256", "created_at", "lines")
FileRow = tuple[str, str, int, str, float, int | None]

#: A file a test brings: its place in the test's list, copied or split (with header), and the
#: shares of a split as JSON ``[[head, start, end, size, sha256], ...]`` by container index.
TEST_FILE_COLUMNS = ("test_id", "file_id", "position", "split", "header", "shares")
TestFileRow = tuple[str, str, int, int, int, str]


def select(table: str, columns: tuple[str, ...]) -> str:
    """``SELECT`` of ``columns`` from ``table``, in that order."""
    return f"SELECT {', '.join(columns)} FROM {table}"


def insert(table: str, columns: tuple[str, ...]) -> str:
    """``INSERT`` of one row: refused when a row with its id exists."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


def upsert(table: str, columns: tuple[str, ...]) -> str:
    """``INSERT`` of one row, or ``UPDATE`` of the row with its id (the first column): never a delete
    and insert, which ``INSERT OR REPLACE`` is (it would also drop any other row in its way)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    return f"{insert(table, columns)} ON CONFLICT({columns[0]}) DO UPDATE SET {updates}"


def upsert_labels() -> str:
    """``INSERT`` of one label row, or ``UPDATE`` of the row of its (container, label)."""
    return (
        f"{insert('container_labels', LABEL_COLUMNS)} ON CONFLICT(container_id, label)"
        " DO UPDATE SET figures = excluded.figures, errors = excluded.errors"
    )


def dump(model: Any) -> str | None:
    """A wire model as stored (JSON), None for None."""
    return None if model is None else model.model_dump_json()


def why(exc: BaseException) -> str:
    """Why a value could not be stored, in the words a client can act on."""
    if isinstance(exc, UnicodeError) or "surrogates not allowed" in str(exc):
        return "a text value is not valid Unicode (a lone surrogate such as \\udc80)"
    return str(exc)


def test_row(t: TestRec) -> tuple[Any, ...]:
    return (
        t.id,
        t.name,
        t.provider_id,
        t.provider_name,
        json.dumps(t.locations),
        t.image,
        json.dumps(t.properties),
        t.plan,
        t.state,
        t.reason,
        t.created_at,
        t.started_at,
        t.ended_at,
        int(t.stop_requested),
        dump(t.results),
        json.dumps(t.container_ids),
        json.dumps([c.model_dump(mode="json") for c in t.criteria]) if t.criteria else None,
        t.verdict,
        json.dumps(t.warnings) if t.warnings else None,
    )


def container_row(c: ContainerRec) -> tuple[Any, ...]:
    return (
        c.id,
        c.test_id,
        c.agent_id,
        c.index,
        c.state,
        c.shutdown_port,
        c.docker_id,
        c.exit_code,
        c.error,
        dump(c.final),
        dump(c.figures),
        c.updated_at,
    )


def command_row(c: CommandRec) -> tuple[Any, ...]:
    # Without the plan: it is the test's, stored once with it and put back at load.
    launch = None if c.launch is None else c.launch.model_dump_json(exclude={"plan"})
    return (c.id, c.agent_id, c.kind, c.container_id, c.test_id, c.created_at, launch, c.grace_s)


def file_row(f: FileRec) -> FileRow:
    return (f.id, f.name, f.size, f.sha256, f.created_at, f.lines)


def file_from_row(row: tuple[Any, ...]) -> FileRec:
    """A file from a row of :data:`FILE_COLUMNS`."""
    return FileRec(*row)


def test_file_rows(t: TestRec) -> list[TestFileRow]:
    """The ``test_files`` rows of a test, one per file it brings."""
    return [
        (t.id, u.file_id, i, int(u.split), int(u.header),
         json.dumps([[x.head, x.start, x.end, x.size, x.sha256] for x in u.shares]))
        for i, u in enumerate(t.files)
    ]  # fmt: skip


def file_use_from_row(row: tuple[Any, ...]) -> FileUse:
    """A test's file from a row of :data:`TEST_FILE_COLUMNS` (the test id and position left to the caller)."""
    shares = [Share(*x) for x in json.loads(row[5])]
    return FileUse(file_id=row[1], split=bool(row[3]), header=bool(row[4]), shares=shares)


def agent_from_row(row: tuple[Any, ...]) -> AgentRec:
    """An agent from a row of :data:`AGENT_COLUMNS`."""
    agent = AgentRec(*row[:11])
    agent.instance, agent.retiring = row[11], bool(row[12])
    agent.drained, agent.machine_id = bool(row[13]), row[14]
    return agent


def test_from_row(row: tuple[Any, ...]) -> TestRec:
    """A test from a row of :data:`TEST_COLUMNS`."""
    return TestRec(
        id=row[0],
        name=row[1],
        provider_id=row[2],
        provider_name=row[3],
        locations=json.loads(row[4]),
        image=row[5],
        properties=json.loads(row[6]),
        plan=row[7],
        state=row[8],
        reason=row[9],
        created_at=row[10],
        started_at=row[11],
        ended_at=row[12],
        stop_requested=bool(row[13]),
        results=TestResults.model_validate_json(row[14]) if row[14] else None,
        container_ids=json.loads(row[15]),
        criteria=[CriterionResult.model_validate(x) for x in json.loads(row[16])] if row[16] else [],
        verdict=row[17],
        warnings=json.loads(row[18]) if row[18] else [],
    )


def container_from_row(row: tuple[Any, ...]) -> ContainerRec:
    """A container from a row of :data:`CONTAINER_COLUMNS`."""
    return ContainerRec(
        id=row[0],
        test_id=row[1],
        agent_id=row[2],
        index=row[3],
        state=row[4],
        shutdown_port=row[5],
        docker_id=row[6],
        exit_code=row[7],
        error=row[8],
        final=FinalResults.model_validate_json(row[9]) if row[9] else None,
        figures=JMeterFigures.model_validate_json(row[10]) if row[10] else None,
        updated_at=row[11],
    )


def command_from_row(row: tuple[Any, ...], plans: dict[str, str]) -> CommandRec:
    """A command from a row of :data:`COMMAND_COLUMNS`; ``plans``: the tests' plans by test id."""
    return CommandRec(
        id=row[0],
        agent_id=row[1],
        kind=row[2],
        container_id=row[3],
        test_id=row[4],
        created_at=row[5],
        # stored without the plan, which is its test's (stored once)
        launch=LaunchSpec.model_validate({**json.loads(row[6]), "plan": plans.get(row[4], "")}) if row[6] else None,
        grace_s=row[7],
    )
