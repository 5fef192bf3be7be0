"""The ``:`` command line's words (k9s): what each command takes, what completes a line, and which
agent, test or provider a name means. Pure functions of the dashboard's state; the app runs them
(:meth:`octotui.tui.app.OctoApp.command`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from octotui.protocol import TERMINAL_TEST_STATES, Agent, Provider, Test

#: What a command's argument names (None: it takes none).
Kind = Literal["agent", "test", "provider", "live-test"] | None

#: Every command, with the kind of its argument and what it does, in the order Tab lists them.
COMMANDS: dict[str, tuple[Kind, str]] = {
    "agents": (None, "the agents table"),
    "tests": (None, "the tests table"),
    "providers": (None, "the providers table"),
    "monitors": (None, "the monitors of the servers under test"),
    "agent": ("agent", "one agent's detail"),
    "test": ("test", "one test's detail (id or name)"),
    "provider": ("provider", "one provider's install lines"),
    "drain": ("agent", "take an agent out of service (asks first)"),
    "undrain": ("agent", "put a drained agent back in service (asks first)"),
    "stop": ("live-test", "stop a test (asks first)"),
    "help": (None, "every key"),
    "q": (None, "quit"),
}
#: Commands that change something: refused in read-only mode.
WRITES = frozenset({"drain", "undrain", "stop"})
#: Other spellings an operator may try.
ALIASES = {"quit": "q", "q!": "q", "agt": "agents", "ag": "agents", "te": "tests", "prov": "providers"}


@dataclass(frozen=True)
class State:
    """What the command line may name: the dashboard's agents, tests and providers now."""

    agents: Sequence[Agent] = ()
    tests: Sequence[Test] = ()
    providers: Sequence[Provider] = ()


@dataclass(frozen=True)
class Parsed:
    """A line split into its command (resolved alias) and argument ("" when none)."""

    command: str
    argument: str


def parse(line: str) -> Parsed | str:
    """The command and argument of ``line`` (a leading ``:`` is allowed), or why it is not one."""
    text = line.strip().removeprefix(":").strip()
    if not text:
        return "type a command: " + " ".join(COMMANDS) + " (Tab completes)"
    word, _, argument = text.partition(" ")
    command = ALIASES.get(word.lower(), word.lower())
    if command not in COMMANDS:
        return f"unknown command: {word} (Tab lists the commands)"
    kind, _ = COMMANDS[command]
    argument = argument.strip()
    if kind is None and argument:
        return f":{command} takes no argument"
    if kind is not None and not argument:
        return f":{command} needs {'a test id or name' if kind in ('test', 'live-test') else f'a {kind} name'}"
    return Parsed(command, argument)


def names(kind: Kind, state: State) -> list[str]:
    """What may follow a command of ``kind``: names (tests: the newest first), without repeats."""
    if kind == "agent":
        found = sorted(a.name for a in state.agents)
    elif kind == "provider":
        found = sorted(p.name for p in state.providers)
    elif kind in ("test", "live-test"):
        tests = sorted(state.tests, key=lambda t: t.created_at, reverse=True)
        if kind == "live-test":
            tests = [t for t in tests if t.state not in TERMINAL_TEST_STATES]
        found = [t.name for t in tests]
    else:
        return []
    return list(dict.fromkeys(found))


def candidates(line: str, state: State) -> list[str]:
    """Whole lines (without the ``:``) that complete ``line``: commands, then names after a command."""
    text = line.lstrip().removeprefix(":")
    if " " not in text:
        word = text.lower()
        return [c for c in COMMANDS if c.startswith(word)]
    word, _, argument = text.partition(" ")
    command = ALIASES.get(word.lower(), word.lower())
    kind = COMMANDS.get(command, (None, ""))[0]
    argument = argument.lstrip()
    return [f"{command} {n}" for n in names(kind, state) if n.lower().startswith(argument.lower())]


def complete(line: str, state: State) -> str:
    """``line`` completed as far as it is unambiguous (Tab): one candidate whole (with a space after
    a command that takes an argument), else their longest common start; ``line`` when none fits."""
    found = candidates(line, state)
    if not found:
        return line
    if len(found) == 1:
        (only,) = found
        takes = " " not in only and COMMANDS.get(only, (None, ""))[0] is not None
        return only + (" " if takes else "")
    common = found[0]
    for other in found[1:]:
        while not other.lower().startswith(common.lower()):
            common = common[:-1]
    return common if len(common) > len(line.strip()) else line


def resolve_agent(argument: str, agents: Sequence[Agent]) -> Agent | str:
    """The agent ``argument`` names (its name, else its id), or why none or several do."""
    found = [a for a in agents if a.name == argument] or [a for a in agents if a.name.lower() == argument.lower()]
    found = found or [a for a in agents if a.id == argument]
    if not found:
        return f"no agent named {argument}"
    if len(found) > 1:
        return f"{len(found)} agents are named {argument}: pick one in the agents table (a)"
    return found[0]


def resolve_test(argument: str, tests: Sequence[Test]) -> Test | str:
    """The test ``argument`` names (its id, else the newest test of that name), or why none does."""
    by_id = [t for t in tests if t.id == argument]
    if by_id:
        return by_id[0]
    found = [t for t in tests if t.name == argument] or [t for t in tests if t.name.lower() == argument.lower()]
    if not found:
        return f"no test named {argument}"
    return max(found, key=lambda t: t.created_at)


def resolve_provider(argument: str, providers: Sequence[Provider]) -> Provider | str:
    """The provider ``argument`` names (its name, else its id), or why none does."""
    found = [p for p in providers if p.name == argument] or [p for p in providers if p.name.lower() == argument.lower()]
    found = found or [p for p in providers if p.id == argument]
    return found[0] if found else f"no provider named {argument}"
