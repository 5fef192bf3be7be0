"""Text at the contract's edge: strings, JMeter properties and Docker image references checked
before anything reaches memory or the store."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

# --- text at the contract's edge --------------------------------------------------------------
#
# JSON may spell a lone surrogate ("\udc80") that Python keeps in a str but that no UTF-8 encoder
# (the store, a log, an answer) can write afterwards, and NUL or control characters that mean
# nothing in a name and reach terminals, argv and files. Every string a request carries is one of:
#   Line        one line typed by an operator: lone surrogates and every control character refused;
#   Lines       a document (the plan): as Line, but tab, line feed and carriage return allowed (and
#               what XML 1.0 allows besides: DEL and C1), U+FFFE/U+FFFF refused like XML does;
#   ReportText  free text an agent reports (OS, Docker and JMeter errors): never refused, lone
#               surrogates and control characters but tab/LF/CR become U+FFFD (a heartbeat must not
#               be lost to an odd error message, and escapes must not reach the dashboard's terminal);
#   ReportLine  the same for one-line agent facts (version, platform): every control becomes U+FFFD;
#   Ident       an id the server or Docker made (letters, digits, ``.``, ``_``, ``:``, ``-``).
# The checks run before pydantic's own: its constrained strings refuse a surrogate only with
# "unable to parse raw data as a unicode string", its plain ones not at all.

_SURROGATES = "\ud800-\udfff"
_NOT_IN_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_SURROGATES}]")
_NOT_IN_LINES = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff{_SURROGATES}]")
_NOT_IN_REPORT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_SURROGATES}]")


def _escape(char: str) -> str:
    """A character as JSON escapes it, so a message about it stays printable and encodable."""
    return f"\\u{ord(char):04x}"


def text_problem(value: str, *, multiline: bool = False) -> tuple[str, str] | None:
    """``(error type, sentence)`` for the first character ``value`` may not hold, or None.

    Positions count characters from 0; a multi-line text adds its line and column (from 1).
    """
    found = (_NOT_IN_LINES if multiline else _NOT_IN_LINE).search(value)
    if found is None:
        return None
    char, at = found.group(), found.start()
    where = f"at position {at}"
    if multiline:
        line_start = value.rfind("\n", 0, at) + 1
        line = value.count("\n", 0, at) + 1
        where += f" (line {line}, column {at - line_start + 1})"
    if "\ud800" <= char <= "\udfff":
        return "text_surrogate", f"contains a lone surrogate ({_escape(char)}) {where}: not valid Unicode text"
    if char == "\x00":
        return "text_nul", f"contains a NUL character ({_escape(char)}) {where}"
    if char in "\ufffe\uffff":
        return "text_noncharacter", f"contains the non-character {_escape(char)} {where}"
    allowed = "only tab, line feed and carriage return may appear in it" if multiline else "it must be one line"
    return "text_control", f"contains a control character ({_escape(char)}) {where}: {allowed}"


def _refuse(problem: tuple[str, str] | None) -> None:
    if problem is not None:
        raise PydanticCustomError(problem[0], "{problem}", {"problem": problem[1]})


def _line(value: object) -> object:
    if isinstance(value, str):
        _refuse(text_problem(value))
    return value


def _lines(value: object) -> object:
    if isinstance(value, str):
        _refuse(text_problem(value, multiline=True))
    return value


def _scrub_report(value: object) -> object:
    if isinstance(value, str) and _NOT_IN_REPORT.search(value):
        return _NOT_IN_REPORT.sub("\ufffd", value)
    return value


def _scrub_line(value: object) -> object:
    if isinstance(value, str) and _NOT_IN_LINE.search(value):
        return _NOT_IN_LINE.sub("\ufffd", value)
    return value


Line = Annotated[str, BeforeValidator(_line)]
Lines = Annotated[str, BeforeValidator(_lines)]
ReportText = Annotated[str, BeforeValidator(_scrub_report)]
ReportLine = Annotated[str, BeforeValidator(_scrub_line)]
_IDENT = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
#: No Python check here (heartbeats carry several per container): the pattern refuses what _line would.
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_IDENT)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$"),
    BeforeValidator(_line),
]
Location = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
    BeforeValidator(_line),
]


#: A test file's name: a plain file name (it is placed beside the plan as ``/plan/NAME``), never a path.
def _not_dots(value: str) -> str:
    if value in (".", ".."):
        raise PydanticCustomError("file_name", "{problem}", {"problem": f"{value!r} is not a file name"})
    return value


FileName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-][A-Za-z0-9._ -]*$"),
    BeforeValidator(_line),
    AfterValidator(_not_dots),
]

# --- JMeter properties (-Jname=value) ----------------------------------------------------------

#: Properties the agent sets itself on every JMeter it starts (``agent/containers.py``
#: ``jmeter_args``), by prefix: the JTL format and field names its result parser reads, the
#: shutdown port it stops JMeter through, the summariser whose ``summary`` lines are the live
#: figures. A test may not override any of them (refused with 422): JMeter would take the later
#: ``-J`` silently and the results or the stop would be lost.
RESERVED_PROPERTY_PREFIXES: tuple[str, ...] = ("jmeter.save.saveservice.", "jmeterengine.nongui.", "summariser.")
#: Properties that a field of :class:`TestCreate` sets too; a test may set each in one place only
#: (the same value in both is accepted, a different one refused).
FIELD_PROPERTIES: tuple[str, ...] = ("users", "duration", "rampup")
MAX_PROPERTIES = 100
MAX_PROPERTY_NAME = 128
MAX_PROPERTY_VALUE = 4096  # x MAX_PROPERTIES stays far under Linux's 2 MiB of arguments
_PROPERTY_NAME_REFUSED = re.compile(r"[=\s]")


def reserved_property(name: str) -> str | None:
    """The reserved prefix ``name`` falls under (see :data:`RESERVED_PROPERTY_PREFIXES`), or None."""
    return next((prefix for prefix in RESERVED_PROPERTY_PREFIXES if name.startswith(prefix)), None)


def property_problem(name: str, value: str) -> str | None:
    """Why ``-J{name}={value}`` may not be passed to JMeter, or None.

    A name is what JMeter's ``-J`` takes: not empty (JMeter then stops with "Unable to parse first
    argument for option -J" and exits 0: a test that ran nothing would read finished), no ``=``
    (the first one ends the name), no whitespace or control character, not reserved. A value is
    one line (no control character: argv cannot carry NUL, and the rest means nothing to JMeter);
    ``=`` is fine in it (``url=http://host/?a=b``).
    """
    shown = repr(name if len(name) <= 60 else name[:60] + "…")
    if (problem := text_problem(name)) is not None:
        return f"property name {shown} {problem[1]}"
    if not name:
        return "a property name is empty (JMeter refuses -J=value and runs nothing)"
    if len(name) > MAX_PROPERTY_NAME:
        return f"property name {shown} is longer than {MAX_PROPERTY_NAME} characters"
    if (bad := _PROPERTY_NAME_REFUSED.search(name)) is not None:
        what = "'='" if bad.group() == "=" else "whitespace"
        return f"property name {shown} contains {what} at position {bad.start()}: JMeter's -Jname=value cannot carry it"
    if (prefix := reserved_property(name)) is not None:
        return f"property {shown} is set by the agent itself (every {prefix}* property is reserved)"
    if (problem := text_problem(value)) is not None:
        return f"the value of property {shown} {problem[1]}"
    if len(value) > MAX_PROPERTY_VALUE:
        return f"the value of property {shown} is longer than {MAX_PROPERTY_VALUE} characters"
    return None


def _properties(value: object) -> object:
    if not isinstance(value, dict):
        return value  # pydantic says what it should be
    if len(value) > MAX_PROPERTIES:
        raise PydanticCustomError(
            "properties_too_many", "{problem}", {"problem": f"{len(value)} properties: at most {MAX_PROPERTIES}"}
        )
    for name, item in value.items():
        if isinstance(name, str) and isinstance(item, str) and (problem := property_problem(name, item)):
            raise PydanticCustomError("property_invalid", "{problem}", {"problem": problem})
    return value


#: ``-J`` properties of a test, checked as a whole so that a name is never echoed raw in an
#: error's location (a name holding a lone surrogate could not be written in the answer).
Properties = Annotated[
    dict[str, str],
    BeforeValidator(_properties),
    Field(
        json_schema_extra={
            "maxProperties": MAX_PROPERTIES,
            "propertyNames": {"minLength": 1, "maxLength": MAX_PROPERTY_NAME, "pattern": r"^[^=\s]+$"},
            "additionalProperties": {"type": "string", "maxLength": MAX_PROPERTY_VALUE},
        }
    ),
]


# --- Docker image references -------------------------------------------------------------------
# Written from the grammar of distribution/reference (reference.go's comment):
#   reference   := name [ ":" tag ] [ "@" digest ]
#   name        := [ domain "/" ] path-component [ "/" path-component ]*
#   domain      := host [ ":" port ]   host := domain-component [ "." domain-component ]* | "[" IPv6 "]"
#   path-component := [a-z0-9]+ ( separator [a-z0-9]+ )*     separator := [_.] | "__" | "-"+
#   tag         := [\w][\w.-]{0,127}          (Go's \w: ASCII letters, digits, _)
# and digests as Docker pulls them: sha256 with 64 lowercase hex digits (sha512: 128).

_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*"
_IMAGE_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"
_IMAGE = rf"({_IMAGE_NAME})(?::{_TAG})?(?:@(?:{_DIGEST}))?"
IMAGE_REFERENCE = re.compile(_IMAGE, re.ASCII)
IMAGE_NAME_MAX = 255  # distribution/reference's NameTotalLengthMax (registry and path, not the tag)
_IMAGE_FORM = "[registry[:port]/]name[:tag][@sha256:<64 hex digits>], e.g. justb4/jmeter:5.5"


def image_problem(image: str) -> str | None:
    """Why ``image`` is not a Docker image reference, or None."""
    if not image:
        return "is empty: leave the image out (null) for the server's default"
    if (space := re.search(r"\s", image)) is not None:
        return f"contains whitespace at position {space.start()}: not a Docker image reference ({_IMAGE_FORM})"
    found = IMAGE_REFERENCE.fullmatch(image)
    if found is None:
        hint = ""
        if IMAGE_REFERENCE.fullmatch(image.lower()) is not None:
            hint = " (a repository name is lowercase: only the registry host and the tag may have capitals)"
        elif "@" in image:
            hint = " (a digest is sha256: and 64 lowercase hex digits)"
        return f"{image!r} is not a Docker image reference{hint}: expected {_IMAGE_FORM}"
    if len(found.group(1)) > IMAGE_NAME_MAX:
        return f"has a name longer than {IMAGE_NAME_MAX} characters (registry and repository)"
    return None


def _image(value: str) -> str:
    if (problem := image_problem(value)) is not None:
        raise PydanticCustomError("image_reference", "{problem}", {"problem": problem})
    return value


#: A Docker image reference, checked against Docker's grammar (the schema's pattern is the same).
Image = Annotated[
    str,
    AfterValidator(_image),
    BeforeValidator(_line),
    Field(max_length=512, json_schema_extra={"pattern": f"^{_IMAGE.replace('(', '(?:', 1)}$"}),
]
