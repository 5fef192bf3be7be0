"""The launch form's logic without Textual or Docker: what it accepts is what the contract accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from octotui.protocol import Location, Name, Test, TestCreate
from octotui.tui.forms import (
    LIMITS,
    FileChoice,
    check_location,
    check_name,
    criteria_problem,
    files_summary,
    parse_count,
    prefill_fields,
    read_launch_form,
    rerun_question,
    rerun_spec,
    split_criteria,
    split_monitors,
)

PLAN = Path(__file__).resolve().parents[1] / "examples" / "http-get.jmx"


def fields(**values: str) -> dict[str, str]:
    return {"plan": str(PLAN), "containers": "1"} | values


def contract_accepts(field: str, value: int) -> bool:
    spec = {"name": "t", "plan": "<x/>", "provider": "p", "containers": 1} | {field: value}
    try:
        TestCreate(**spec)  # type: ignore[arg-type]
    except ValidationError:
        return False
    return True


# Each count field takes the contract's bounds, from TestCreate itself.


@pytest.mark.parametrize("field", sorted(LIMITS))
def test_count_bounds_are_the_contracts(field: str) -> None:
    limit = LIMITS[field]
    for value in (limit.low - 1, limit.low, limit.high, limit.high + 1):
        accepted = parse_count(str(value), field)[1] is None
        assert accepted == contract_accepts(field, value), (field, value)


def test_count_problems_in_words() -> None:
    assert parse_count("", "containers") == (None, "Containers is required")
    assert parse_count("", "users") == (None, None)
    assert parse_count("2.5", "users") == (None, "Users/container: a whole number, got '2.5'")
    assert parse_count("0", "duration") == (None, "Duration: at least 1")
    assert parse_count("604801", "duration") == (None, "Duration: at most 7 days (604800 s)")
    assert parse_count("86401", "rampup") == (None, "Ramp-up: at most 1 day (86400 s)")
    assert parse_count("1001", "containers") == (None, "Containers: at most 1000")
    assert parse_count(" 7 ", "containers") == (7, None)


# check_name and check_location say no exactly when the contract's types do.


@pytest.mark.parametrize("value", ["lab", "Lab 2", "a.b_c-d", "x" * 64, "x" * 65, "-lead", "é", "a/b", "a;b"])
def test_check_name_agrees_with_the_contract(value: str) -> None:
    try:
        TypeAdapter(Name).validate_python(value)
        valid = True
    except ValidationError:
        valid = False
    assert (check_name(value) is None) == valid


@pytest.mark.parametrize("value", ["paris", "us-east.1", "x" * 64, "x" * 65, "two words", "_x", ""])
def test_check_location_agrees_with_the_contract(value: str) -> None:
    try:
        TypeAdapter(Location).validate_python(value)
        valid = True
    except ValidationError:
        valid = False
    assert (check_location(value) is None) == valid


# The form's fields become a TestCreate, or the first problem in the form's words.


def test_a_complete_launch_form() -> None:
    form = read_launch_form(
        fields(
            name="",
            locations="paris, lyon",
            containers="3",
            users="10",
            duration="60",
            rampup="90",
            properties="users=10 host=example.org",
            image=" jmeter:5 ",
        ),
        "prov-1",
        max_plan_bytes=None,
    )
    assert form.problem is None and form.spec is not None
    spec = form.spec
    assert (spec.name, spec.provider, spec.containers, spec.locations) == ("http-get", "prov-1", 3, ["paris", "lyon"])
    assert (spec.users, spec.duration, spec.rampup, spec.image) == (10, 60, 90, "jmeter:5")
    assert spec.properties == {"users": "10", "host": "example.org"}
    assert form.warnings == ("Ramp-up (90 s) is longer than Duration (60 s): not every user starts",)


def test_launch_form_first_problem_wins_in_field_order(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jmx")
    assert read_launch_form(fields(plan=missing, containers="x"), "p", None).problem == (
        f"Plan file: no such file: {missing}"
    )
    assert read_launch_form(fields(), None, None).problem == "Provider: create a provider first"
    form = read_launch_form(fields(containers="0", users="x"), "p", None)
    assert form.problem == "Containers: at least 1"
    assert read_launch_form(fields(users="x", rampup="-1"), "p", None).problem == (
        "Users/container: a whole number, got 'x'"
    )


def test_launch_form_name_locations_and_properties(tmp_path: Path) -> None:
    odd = tmp_path / "my plan!.jmx"
    odd.write_text("<jmeterTestPlan/>")
    problem = read_launch_form(fields(plan=str(odd)), "p", None).problem or ""
    assert problem.startswith("Name (the plan's file name 'my plan!'): letters, digits")
    assert read_launch_form(fields(name="ok", plan=str(odd)), "p", None).problem is None
    assert read_launch_form(fields(locations="paris,/x"), "p", None).problem == (
        "Locations: '/x': letters, digits, '.', '_' and '-' only, starting with a letter or digit"
    )
    assert "not ';'" in (read_launch_form(fields(properties="a=1;b=2"), "p", None).problem or "")


def test_launch_form_says_the_contracts_refusals_in_its_words() -> None:
    # Rules of the contract that the form does not restate: its refusal, named by field when it has one.
    conflict = read_launch_form(fields(users="5", properties="users=7"), "p", None)
    assert conflict.problem == "Property users='7' contradicts users=5: set users in one place"
    reserved = read_launch_form(fields(properties="jmeterengine.nongui.port=1"), "p", None).problem or ""
    assert reserved.startswith("Properties: property 'jmeterengine.nongui.port' is set by the agent itself")
    image = read_launch_form(fields(image="Foo/Bar"), "p", None).problem or ""
    assert image.startswith("Image: 'Foo/Bar' is not a Docker image reference (a repository name is lowercase")


def test_launch_form_plan_too_large_for_the_server() -> None:
    size = PLAN.stat().st_size
    problem = read_launch_form(fields(), "p", max_plan_bytes=size - 1).problem or ""
    assert problem.startswith("Plan file: ") and "the server accepts at most" in problem
    assert read_launch_form(fields(), "p", max_plan_bytes=size).problem is None


# The Files field: local paths with ':split' and/or ':header', checked on disk before anything is sent.


def test_files_field_reads_paths_and_options(tmp_path: Path) -> None:
    users, extra = tmp_path / "users.csv", tmp_path / "extra.txt"
    users.write_text("id\n1\n2\n")
    extra.write_bytes(b"x" * 2048)
    form = read_launch_form(fields(files=f"{users}:split:header, {extra}"), "p", None)
    assert form.problem is None and form.spec is not None
    assert form.files == (FileChoice(users, True, True, 7), FileChoice(extra, False, False, 2048))
    assert form.spec.files == [], "uploaded at launch, not before"
    assert files_summary(form.files) == "2 files to upload (2 KiB): users.csv split +header, extra.txt"
    assert read_launch_form(fields(files=" , "), "p", None).files == ()


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("{d}/nope.csv", "Files: no such file: {d}/nope.csv"),
        ("{d}", "Files: {d} is a directory, not a file"),
        ("{d}/a.csv:splt", "Files: '{d}/a.csv:splt': unknown option ':splt' (':split' and/or ':header')"),
        ("{d}/a.csv:header", "Files: '{d}/a.csv:header': ':header' goes with ':split' (a copy keeps the whole file)"),
        ("{d}/a.csv, {d}/sub/a.csv", "Files: two files named a.csv: the containers see them by name"),
    ],
)
def test_files_field_refuses_what_cannot_be_sent(tmp_path: Path, typed: str, problem: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.csv").write_text("a\n")
    (tmp_path / "sub" / "a.csv").write_text("b\n")
    form = read_launch_form(fields(files=typed.format(d=tmp_path)), "p", None)
    assert form.spec is None and form.problem == problem.format(d=tmp_path)


# Criteria and monitors: several per field, and a refusal naming a criterion says which.


def test_criteria_split_on_semicolons_and_lines() -> None:
    assert split_criteria("p95<500ms; errors<1%\nhits/s>100;;\r\n ") == ["p95<500ms", "errors<1%", "hits/s>100"]
    assert split_criteria("  ") == []
    assert split_monitors("db server, web;cache\n") == ["db server", "web", "cache"]


def test_criteria_refusal_names_the_criterion() -> None:
    criteria = ["p95<500ms", "p95<<1"]
    assert criteria_problem("criteria.1: unparsable at position 5", criteria) == (
        "criteria.1: unparsable at position 5 ('p95<<1')"
    )
    assert criteria_problem("criteria[0] bad", criteria) == "criteria[0] bad ('p95<500ms')"
    assert criteria_problem("criterion 'p95<<1': expected a number at 5", criteria) == (
        "criterion 'p95<<1': expected a number at 5"
    )
    assert criteria_problem("criteria.7: out of range", criteria) == "criteria.7: out of range"
    assert criteria_problem("image: no such image", criteria) is None


def test_criteria_monitors_and_stop_reach_the_spec() -> None:
    form = read_launch_form(
        fields(criteria="p95<500ms; errors<1%", monitors="db, web", stop_on_critical="yes"), "p", None
    )
    assert form.spec is not None
    assert form.spec.criteria == ["p95<500ms", "errors<1%"]
    assert form.spec.monitors == ["db", "web"] and form.spec.stop_on_critical
    too_many = read_launch_form(fields(criteria=";".join(["p95<1ms"] * 51)), "p", None)
    assert too_many.spec is None and too_many.problem == "Criteria: at most 50, got 51"


def test_a_test_again_keeps_its_criteria_and_monitors() -> None:
    test = Test.model_validate(
        {
            "id": "t1",
            "name": "shop",
            "provider": "p1",
            "image": "img:1",
            "state": "finished",
            "created_at": "2026-01-01T00:00:00Z",
            "criteria": [{"expr": "p95<500ms", "metric": "p95", "op": "<", "threshold": 500.0, "passed": True}],
            "monitors": ["m1", "m2"],
            "stop_on_critical": True,
        }
    )
    spec = rerun_spec(test, "<plan/>")
    assert (spec.criteria, spec.monitors, spec.stop_on_critical) == (["p95<500ms"], ["m1", "m2"], True)
    fields, _ = prefill_fields(test)
    assert (fields["criteria"], fields["monitors"], fields["stop_on_critical"]) == ("p95<500ms", "m1, m2", "yes")
    question = rerun_question(test)
    assert "criteria p95<500ms" in question and "2 monitors, stopped on a critical alarm" in question
