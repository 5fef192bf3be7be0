"""What the dashboard's forms accept, without Textual: the launch form read into a ``TestCreate``,
names and locations checked, a placement said in words.

The limits are the wire contract's (:mod:`octotui.protocol`), read from its field constraints, so a
form never accepts what the server refuses nor refuses what it accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotated_types import Ge, Le
from pydantic import StringConstraints, ValidationError

from octotui.protocol import (
    FIELD_PROPERTIES,
    MAX_CRITERIA,
    Location,
    Name,
    Placement,
    Test,
    TestCreate,
    TestFile,
    property_problem,
)
from octotui.tui.format import human_size, plural


def _string_rule(annotated: Any) -> StringConstraints:
    return next(m for m in annotated.__metadata__ if isinstance(m, StringConstraints))


_NAME = _string_rule(Name)
_LOCATION = _string_rule(Location)


def check_name(value: str) -> str | None:
    """Why ``value`` cannot be a name (a provider's, a test's), or None when it can."""
    value = value.strip()
    if _NAME.max_length is not None and len(value) > _NAME.max_length:
        return f"at most {_NAME.max_length} characters"
    if not re.match(str(_NAME.pattern), value):
        return "letters, digits, space, '.', '_' and '-', starting with a letter or digit"
    return None


def check_location(location: str) -> str | None:
    """Why ``location`` cannot be an agent's location, or None when it can."""
    value = location.strip()
    if not value:
        return "type a location, e.g. paris"
    if _LOCATION.max_length is not None and len(value) > _LOCATION.max_length:
        return f"a location has at most {_LOCATION.max_length} characters"
    if not re.match(str(_LOCATION.pattern), value):
        return "letters, digits, '.', '_' and '-' only, starting with a letter or digit"
    return None


# --- the plan file ----------------------------------------------------------------------------


def check_plan_path(text: str, max_bytes: int | None = None) -> str | None:
    """Why ``text`` cannot be used as a plan file, or None when it can."""
    raw = text.strip()
    if not raw:
        return "type the path of a JMeter plan (.jmx)"
    path = Path(raw).expanduser()
    if not path.exists():
        return f"no such file: {path}"
    if path.is_dir():
        return f"{path} is a directory, not a plan file"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    size = path.stat().st_size
    if size == 0:
        return f"{path} is empty"
    if max_bytes and size > max_bytes:
        return f"{path} is {human_size(size)}; the server accepts at most {human_size(max_bytes)}"
    return None


def plan_label(text: str) -> str:
    """The plan file's name, with its size once it is a file: ``plan.jmx (1.3 KiB)``."""
    path = Path(text.strip()).expanduser()
    return f"{path.name} ({human_size(path.stat().st_size)})" if path.is_file() else path.name


def read_plan(text: str) -> str:
    """The plan file's text (blocking: run it in a thread)."""
    return Path(text.strip()).expanduser().read_text(encoding="utf-8", errors="replace")


# --- counts and properties --------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """A count field of the launch form: the contract's bounds, and how the form names them."""

    low: int
    high: int
    label: str
    words: str  # the upper bound said in words


def _limit(field: str, label: str, seconds: bool = False) -> Limit:
    metadata = TestCreate.model_fields[field].metadata
    low = next(m.ge for m in metadata if isinstance(m, Ge))
    high = next(m.le for m in metadata if isinstance(m, Le))
    assert isinstance(low, int) and isinstance(high, int)
    words = f"at most {high}"
    if seconds and high % 86400 == 0:
        words = f"at most {plural(high // 86400, 'day')} ({high} s)"
    return Limit(low, high, label, words)


#: The count fields of the launch form, with the wire contract's limits.
LIMITS = {
    "containers": _limit("containers", "Containers"),
    "users": _limit("users", "Users/container"),
    "duration": _limit("duration", "Duration", seconds=True),
    "rampup": _limit("rampup", "Ramp-up", seconds=True),
}


def parse_count(text: str, field: str) -> tuple[int | None, str | None]:
    """The whole number typed in count ``field`` (None when empty), or why it is not acceptable."""
    limit = LIMITS[field]
    raw = text.strip()
    if not raw:
        return None, (f"{limit.label} is required" if field == "containers" else None)
    try:
        value = int(raw)
    except ValueError:
        return None, f"{limit.label}: a whole number, got {raw!r}"
    if value < limit.low:
        return None, f"{limit.label}: at least {limit.low}"
    if value > limit.high:
        return None, f"{limit.label}: {limit.words}"
    return value, None


def parse_properties(text: str) -> tuple[dict[str, str], str | None]:
    """``key=value`` pairs separated by spaces or commas, or why the text is not that (a name or a
    value the contract refuses: see :func:`octotui.protocol.property_problem`)."""
    if ";" in text:
        return {}, "Properties: separate key=value pairs with spaces or commas, not ';'"
    properties: dict[str, str] = {}
    for pair in re.split(r"[\s,]+", text.strip()):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return {}, f"Properties: expected key=value, got {pair!r}"
        if "=" in value:
            return {}, f"Properties: one '=' per pair, got {pair!r} (missing a space or comma?)"
        if problem := property_problem(key, value):
            return {}, f"Properties: {problem}"
        properties[key] = value
    return properties, None


# --- the launch form --------------------------------------------------------------------------

#: Fields whose values the next launch dialog of the session starts with.
REMEMBERED = (
    "plan",
    "locations",
    "containers",
    "users",
    "duration",
    "rampup",
    "properties",
    "image",
    "files",
    "criteria",
    "monitors",
    "stop_on_critical",
)


# --- criteria and monitors --------------------------------------------------------------------


def split_criteria(text: str) -> list[str]:
    """The criteria typed in the Criteria field: separated by ``;`` or one per line (a paste of
    several lines), blanks dropped. The server parses each (a bad one: 422 naming its position)."""
    return [c.strip() for c in re.split(r"[;\n\r]+", text) if c.strip()]


def split_monitors(text: str) -> list[str]:
    """The monitors typed in the Monitors field (names or ids), separated by commas (a name may
    hold a space)."""
    return [m.strip() for m in re.split(r"[,;\n]+", text) if m.strip()]


def criteria_problem(message: str, criteria: list[str]) -> str | None:
    """What a refusal of the server says about the criteria, on the Criteria field (None when it
    is about something else): a list index (``criteria.1``, ``criteria[1]``, from 0) gets the
    criterion's text added, so that it reads which one without counting."""
    if "criteri" not in message.lower():
        return None
    found = re.search(r"criteria(?:\.|\[)(\d+)", message)
    if found:
        index = int(found.group(1))
        if 0 <= index < len(criteria) and criteria[index] not in message:
            return f"{message} ({criteria[index]!r})"
    return message


# --- the test's files -------------------------------------------------------------------------

#: What may follow a file's path, after ':' (``users.csv:split:header``).
FILE_OPTIONS = ("split", "header")


@dataclass(frozen=True)
class FileChoice:
    """A local file the launch uploads: copied whole to every container, or ``split`` between them
    (``header``: the first line kept on every share)."""

    path: Path
    split: bool = False
    header: bool = False
    size: int = 0


def parse_files(text: str) -> tuple[tuple[FileChoice, ...], str | None]:
    """The files typed in the Files field (``users.csv:split:header, extra.txt``), each checked on
    disk, or why they cannot be sent (nothing is uploaded then)."""
    choices: list[FileChoice] = []
    names: set[str] = set()
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        raw, *options = entry.split(":")
        if unknown := [o for o in options if o.strip().lower() not in FILE_OPTIONS]:
            return (), f"Files: {entry!r}: unknown option ':{unknown[0].strip()}' (':split' and/or ':header')"
        chosen = {o.strip().lower() for o in options}
        if "header" in chosen and "split" not in chosen:
            return (), f"Files: {entry!r}: ':header' goes with ':split' (a copy keeps the whole file)"
        path = Path(raw.strip()).expanduser()
        if not raw.strip():
            return (), f"Files: {entry!r}: no path before ':'"
        if not path.exists():
            return (), f"Files: no such file: {path}"
        if path.is_dir():
            return (), f"Files: {path} is a directory, not a file"
        if not os.access(path, os.R_OK):
            return (), f"Files: cannot read {path}: permission denied"
        if path.name in names:
            return (), f"Files: two files named {path.name}: the containers see them by name"
        names.add(path.name)
        choices.append(FileChoice(path, "split" in chosen, "header" in chosen, path.stat().st_size))
    return tuple(choices), None


def files_summary(files: tuple[FileChoice, ...]) -> str:
    """What the launch will upload, in words: ``2 files to upload (12.3 MiB): users.csv split…``."""
    if not files:
        return ""
    total = sum(f.size for f in files)
    how = ", ".join(f.path.name + (" split" if f.split else "") + (" +header" if f.header else "") for f in files)
    return f"{plural(len(files), 'file')} to upload ({human_size(total)}): {how}"


#: What a launch sent without an answer means.
MAYBE_STARTED = "The test may have started: look at the tests table (escape) before launching again."


@dataclass(frozen=True)
class ServerPlan:
    """A plan read back from the server (``GET /tests/{id}/plan``) for a launch like an earlier test's:
    the plan field reads ``label`` instead of a path, and the launch sends ``text``."""

    label: str
    text: str
    #: The earlier test's name (the launch's name when the field is left empty) and files.
    name: str
    files: tuple[TestFile, ...] = ()


def server_plan_label(test_name: str) -> str:
    """What the plan field reads when the plan is an earlier test's, kept by the server."""
    return f"plan of test {test_name} (from the server)"


@dataclass(frozen=True)
class Form:
    """The launch form's fields, read and checked (``problem`` names the first bad one)."""

    spec: TestCreate | None
    problem: str | None
    warnings: tuple[str, ...] = ()
    #: Local files to upload at launch (added to ``spec.files`` once the server has them).
    files: tuple[FileChoice, ...] = ()


def read_launch_form(
    fields: Mapping[str, str], provider: str | None, max_plan_bytes: int | None, server_plan: ServerPlan | None = None
) -> Form:
    """The spec that the launch form's ``fields`` (text by field name) describe, its plan still to
    be read (see :func:`read_plan`), or the first problem; ``provider``: the chosen provider's id.

    ``server_plan``: an earlier test's plan, used while the plan field reads its label (no path then);
    its files go with the launch."""
    plan_path = fields.get("plan", "")
    from_server = server_plan is not None and plan_path.strip() == server_plan.label
    if not from_server and (problem := check_plan_path(plan_path, max_plan_bytes)):
        return Form(None, f"Plan file: {problem}")
    if provider is None:
        return Form(None, "Provider: create a provider first")
    counts = {name: parse_count(fields.get(name, ""), name) for name in LIMITS}
    if problem := next((p for _, p in counts.values() if p), None):
        return Form(None, problem)
    given = fields.get("name", "").strip()
    name = given or (server_plan.name if server_plan and from_server else Path(plan_path.strip()).expanduser().stem)
    if problem := check_name(name):
        whose = "" if given else f" (the plan's file name {name!r})"
        return Form(None, f"Name{whose}: {problem}")
    locations = [x.strip() for x in fields.get("locations", "").split(",") if x.strip()] or None
    for location in locations or ():
        if problem := check_location(location):
            return Form(None, f"Locations: {location!r}: {problem}")
    properties, problem = parse_properties(fields.get("properties", ""))
    if problem:
        return Form(None, problem)
    files, problem = parse_files(fields.get("files", ""))
    if problem:
        return Form(None, problem)
    criteria = split_criteria(fields.get("criteria", ""))
    if len(criteria) > MAX_CRITERIA:
        return Form(None, f"Criteria: at most {MAX_CRITERIA}, got {len(criteria)}")
    monitors = split_monitors(fields.get("monitors", ""))
    stop_on_critical = fields.get("stop_on_critical", "") == "yes"
    containers, users, duration, rampup = (counts[f][0] for f in ("containers", "users", "duration", "rampup"))
    try:
        spec = TestCreate(
            name=name,
            plan="<pending/>",  # replaced by the file's text when sent
            provider=provider,
            containers=containers or 1,
            locations=locations,
            image=fields.get("image", "").strip() or None,
            users=users,
            duration=duration,
            rampup=rampup,
            properties=properties,
            files=list(server_plan.files) if server_plan and from_server else [],
            criteria=criteria,
            monitors=monitors,
            stop_on_critical=stop_on_critical,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        # The contract's own words; a rule on several fields (a property contradicting a field) has no place.
        return Form(
            None, f"{where.capitalize()}: {first['msg']}" if where else first["msg"][:1].upper() + first["msg"][1:]
        )
    warnings = []
    if stop_on_critical and not monitors:
        warnings.append("Stop on a critical alarm: no monitor named, so no alarm can stop it")
    if rampup is not None and duration is not None and rampup > duration:
        warnings.append(f"Ramp-up ({rampup} s) is longer than Duration ({duration} s): not every user starts")
    return Form(spec, None, tuple(warnings), files)


def placement_text(placement: Placement, users: int | None = None) -> str:
    """The total load, then one line per agent: where the containers would go."""
    head = f"{plural(placement.containers, 'container')} on {plural(len(placement.items), 'agent')}"
    head += f" of {placement.provider_name}"
    lines = [head]
    if users is not None:
        total = placement.containers * users
        per = f"{plural(placement.containers, 'container')} \N{MULTIPLICATION SIGN} {plural(users, 'user')}"
        lines.append(f"load: {per} = {plural(total, 'user')}")
    for item in placement.items[:4]:
        lines.append(f"  {item.agent_name} ({item.location}): {plural(item.containers, 'container')}")
    if len(placement.items) > 4:
        rest = sum(i.containers for i in placement.items[4:])
        lines.append(f"  … {plural(len(placement.items) - 4, 'more agent')}: {plural(rest, 'container')}")
    return "\n".join(lines)


# --- an earlier test, again -------------------------------------------------------------------


def _settings(test: Test) -> tuple[dict[str, int], dict[str, str]]:
    """``test``'s users, duration and ramp-up (the server keeps them as properties) as the launch
    fields they came from, and its other properties; one that is not a count the field accepts
    stays a property, as it was."""
    properties = dict(test.properties)
    counts: dict[str, int] = {}
    for key in FIELD_PROPERTIES:
        value, problem = parse_count(properties.get(key, ""), key)
        if value is not None and problem is None:
            counts[key] = value
            del properties[key]
    return counts, properties


def rerun_spec(test: Test, plan: str) -> TestCreate:
    """The launch that runs ``test`` again as it was: its ``plan`` (read back from the server), name,
    provider, locations, number of containers, image, users, duration, ramp-up, properties, files."""
    counts, properties = _settings(test)
    return TestCreate(
        name=test.name,
        plan=plan,
        provider=test.provider,
        containers=max(1, len(test.containers)),
        locations=list(test.locations) or None,
        image=test.image or None,
        properties=properties,
        files=list(test.files),
        criteria=[c.expr for c in test.criteria],
        monitors=list(test.monitors),
        stop_on_critical=test.stop_on_critical,
        **counts,  # type: ignore[arg-type]
    )


def rerun_question(test: Test) -> str:
    """The confirmation of a re-run: what will run, in words."""
    counts, properties = _settings(test)
    n = max(1, len(test.containers))
    where = test.provider_name or test.provider
    if test.locations:
        where += f" ({', '.join(test.locations)})"
    parts = [plural(n, "container") + f" on {where}"]
    if "users" in counts:
        parts.append(plural(counts["users"], "user") + " each")
    if "duration" in counts:
        parts.append(f"{counts['duration']} s")
    if "rampup" in counts:
        parts.append(f"ramp-up {counts['rampup']} s")
    lines = [f"Run {test.name} again as it was? A new test starts:", " · ".join(parts), f"image {test.image}"]
    if properties:
        shown = " ".join(f"{k}={v}" for k, v in sorted(properties.items()))
        lines.append("properties " + (shown if len(shown) <= 120 else shown[:119] + "…"))
    if test.files:
        lines.append(plural(len(test.files), "file") + " as before")
    if test.criteria:
        lines.append("criteria " + "; ".join(c.expr for c in test.criteria))
    if test.monitors:
        stop = ", stopped on a critical alarm" if test.stop_on_critical else ""
        lines.append(plural(len(test.monitors), "monitor") + stop)
    lines.append(f"plan: {server_plan_label(test.name)}")
    return "\n".join(lines)


def prefill_fields(test: Test) -> tuple[dict[str, str], str]:
    """The launch form's fields filled with ``test``'s settings (its plan field reads
    :func:`server_plan_label`), and its provider's id."""
    counts, properties = _settings(test)
    fields = {
        "plan": server_plan_label(test.name),
        "name": test.name,
        "locations": ",".join(test.locations),
        "containers": str(max(1, len(test.containers))),
        "users": str(counts.get("users", "")),
        "duration": str(counts.get("duration", "")),
        "rampup": str(counts.get("rampup", "")),
        "properties": " ".join(f"{k}={v}" for k, v in properties.items()),
        "image": test.image,
        "criteria": "; ".join(c.expr for c in test.criteria),
        "monitors": ", ".join(test.monitors),
        "stop_on_critical": "yes" if test.stop_on_critical else "",
    }
    return fields, test.provider
