"""Checks that a test plan is a well-formed JMeter plan before any container is launched."""

from __future__ import annotations

from xml.parsers import expat


class PlanError(ValueError):
    """The plan is refused; the message is the parser's, or says what is missing."""


class _Refused(Exception):
    pass


def validate_plan(text: str) -> None:
    """Raise :class:`PlanError` unless ``text`` is a ``<jmeterTestPlan>`` holding a ``TestPlan``.

    DOCTYPE and entity declarations are refused outright (no external entities, no entity
    expansion bombs): JMeter never writes them.
    """
    parser = expat.ParserCreate()
    seen: dict[str, bool] = {"root": False, "plan": False}

    def start(name: str, _attrs: dict[str, str]) -> None:
        if not seen["root"]:
            seen["root"] = True
            if name != "jmeterTestPlan":
                raise _Refused(f"not a JMeter plan: the root element is <{name}>, expected <jmeterTestPlan>")
        elif name == "TestPlan":
            seen["plan"] = True

    def doctype(*_args: object) -> None:
        raise _Refused("DOCTYPE and entity declarations are not allowed in a plan")

    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    try:
        parser.Parse(text, True)
    except _Refused as exc:
        raise PlanError(str(exc)) from None
    except expat.ExpatError as exc:
        raise PlanError(f"the plan is not well-formed XML: {exc}") from None
    if not seen["plan"]:
        raise PlanError("not a JMeter plan: <jmeterTestPlan> holds no <TestPlan> element")
