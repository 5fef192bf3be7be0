"""The scripting subcommands of ``octotui``: what the dashboard does, from a shell or a CI job.

``octotui providers|agents|tests|test ID|launch|stop|run|export|compare``, each with ``--json`` (one JSON
document of the contract's models on stdout) and the dashboard's settings (flags > ``OCTOTUI_*`` >
``[dashboard]`` in the config file). They reach the server through :mod:`octotui.client` only and
never import Textual, so ``octotui agents --json`` answers in a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from octotui.commands import rawjson
from octotui.commands.session import EXIT_INTERRUPTED, EXIT_USAGE, Target, Usage, refusal, settings, target
from octotui.config import CONNECTION, DASHBOARD_OPTIONS, add_options

if TYPE_CHECKING:
    from octotui.commands.files import LocalFile
    from octotui.protocol import TestCreate

# Neither the client nor the contract is imported at the top: ``providers|agents|tests|test --json``
# answer without them (rawjson.py), the rest imports them once the arguments are parsed.

#: Subcommands this package runs (``octotui/cli.py`` routes them here).
NAMES = ("providers", "agents", "tests", "test", "launch", "stop", "run", "export", "compare", "drain", "undrain")

EXIT_CODES = """\
exit codes:
  0  done (run: the test finished with samples and passed its --criteria)
  1  a judgement failed: compare found a regression, or run (launch --wait) failed a --criteria
     (which one and by how much on stderr)
  2  bad usage or input (a missing plan, a bad -J or --criteria, a missing --file), unreachable
     server, unknown agent or test, refused token or request (message on stderr; nothing launched)
  3  the test failed (run, launch --wait): no samples, or every container lost or failed
  4  run (launch --wait): the test WAS launched, then the server stayed unreachable (or answered
     502/503/504) longer than --follow-timeout: its outcome is unknown (test id on stderr)
  130  interrupted by Ctrl-C (run: the test was stopped first; 143 for SIGTERM)"""

CRITERIA_HELP = """\
criteria (--criteria, repeatable; judged by the server, shown by octotui test and the reports):
  METRIC[ of LABEL] OP VALUE[UNIT][ for Ns]
  METRIC  avg, min, max, p50, p90, p95, p99 (UNIT ms or s), errors (%), hits/s (or throughput)
  LABEL   one label only (in double quotes when it holds < or >); without it, the whole test
  OP      <, <=, >, >=: what the figure must be to pass
  for Ns  held while the test runs, on its last 10 s: broken that long, the test is stopped as
          failed; without it, decided on the final figures
  e.g.  'p95<500ms'  'errors<1%'  'hits/s>100'  'avg of login<200ms for 30s'
  An expression that does not parse is refused with its position; nothing is launched."""

MAIN_EPILOG = f"""\
commands of their own:
  octotui                 the dashboard (embedded server + local agent, or --server URL --token T)
  octotui server          the control server alone (octotui server --help)
  octotui token           operator tokens: create, list, revoke (octotui token --help)

examples:
  octotui agents --json | jq -r '.[] | select(.status=="online") | .name'
  octotui run plan.jmx --provider lab --containers 2 --users 10 --duration 60 -J host=example.com
  octotui tests --last 5
  octotui export t-0a1b2c3d4e5f --format junit -o results.xml
  octotui compare t-0a1b2c3d4e5f t-9f8e7d6c5b4a || echo "a label regressed"
  octotui run plan.jmx --provider lab --containers 2 --criteria 'p95<500ms' --criteria 'errors<1%'
  octotui drain gen-b && octotui agents --provider lab
  OCTOTUI_SERVER=https://octo.example:8427 OCTOTUI_TOKEN=octo_… octotui tests --json

Without --server (or OCTOTUI_SERVER, or server in [dashboard] of the config file) a command uses
the embedded server of --data-dir when a dashboard runs one, else starts one with a local agent for
the command's duration (a second or two more) and stops them after.

{EXIT_CODES}"""

_EXAMPLES = {
    "providers": "octotui providers\n  octotui providers --json | jq -r '.[].name'",
    "agents": "octotui agents\n  octotui agents --provider lab --json",
    "tests": "octotui tests --last 10\n  octotui tests --json | jq -r '.[] | select(.state==\"running\") | .id'",
    "test": (
        "octotui test t-0a1b2c3d4e5f\n  octotui test t-0a1b2c3d4e5f --json | jq .results.p95_ms\n"
        "  octotui test t-0a1b2c3d4e5f --json | jq -r '.verdict, .criteria[].detail, .warnings[]'"
    ),
    "launch": (
        "octotui launch plan.jmx --provider lab --containers 4 --users 50 --duration 300 -J host=example.com\n"
        "  octotui launch plan.jmx --provider lab --containers 2 --file users.csv:split:header --file logo.png\n"
        "  ID=$(octotui launch plan.jmx --provider lab --containers 1 --json | jq -r .id)\n"
        "  octotui launch plan.jmx --provider lab --containers 2 --locations paris,lyon --wait\n"
        "  octotui launch plan.jmx --provider lab --containers 2 --duration 600 --criteria 'p99<2s for 60s'\n"
        "  octotui launch plan.jmx --provider lab --containers 2 --monitor db-host,node --stop-on-critical"
    ),
    "stop": "octotui stop t-0a1b2c3d4e5f\n  octotui stop t-0a1b2c3d4e5f --wait --json",
    "run": (
        "octotui run plan.jmx --provider lab --containers 2 --users 10 --duration 60 -J host=example.com\n"
        '  octotui run plan.jmx --provider local --containers 1 --json > summary.json || echo "exit $?"\n'
        "  octotui run plan.jmx --provider lab --containers 4 --file accounts.csv:split\n"
        "  octotui run plan.jmx --provider lab --containers 2 --criteria 'p95<500ms' --criteria 'errors<1%' \\\n"
        "      --criteria 'hits/s>100' --criteria 'avg of login<200ms for 30s'\n"
        "  octotui run plan.jmx --provider lab --containers 2 --monitor db-host --monitor node --stop-on-critical"
    ),
    "export": (
        "octotui export t-0a1b2c3d4e5f --format jtl -o results.jtl\n"
        "  octotui export t-0a1b2c3d4e5f --format csv -o - | column -s, -t\n"
        "  octotui export t-0a1b2c3d4e5f --format html --baseline t-9f8e7d6c5b4a -o report.html"
    ),
    "compare": (
        "octotui compare t-0a1b2c3d4e5f t-9f8e7d6c5b4a\n"
        "  octotui compare t-0a1b2c3d4e5f t-9f8e7d6c5b4a --p95-tolerance 20 --error-tolerance 0.5\n"
        "  octotui compare t-0a1b2c3d4e5f t-9f8e7d6c5b4a --json | jq -r '.labels[] | select(.regression) | .label'"
    ),
    "drain": (
        "octotui drain gen-b          # no new containers there; the running ones finish\n"
        "  octotui drain a-0a1b2c3d4e5f --json | jq .drained"
    ),
    "undrain": "octotui undrain gen-b        # takes new containers again",
}

DRAIN_EXIT = """\
exit codes:
  0  done (also when it already was)
  2  no agent of that name or id (the server's 404), a name two agents share (give the id),
     unreachable server or refused request (message on stderr)"""

COMPARE_EXIT = """\
exit codes:
  0  no label regressed
  1  at least one label regressed beyond the tolerances (marked ! and its reasons printed)
  2  bad usage, an unknown test, unreachable server or refused request (message on stderr)"""


class _Version(argparse.Action):
    """``--version``, reading the version (in the contract, ~150 ms to import) only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from octotui import __version__

        parser.exit(message=f"octotui {__version__}\n")


def _common() -> argparse.ArgumentParser:
    """The options every subcommand takes, before or after its name."""
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("connection (as the dashboard: flag > OCTOTUI_* > config file)")
    for opt in DASHBOARD_OPTIONS:
        if opt.name in CONNECTION:  # no default here: one given before the command name must stay
            group.add_argument(f"--{opt.name}", dest=opt.dest, type=opt.type, help=f"{opt.help} (env {opt.env_var})")
    common.add_argument("--json", action="store_true", default=False, help="print one JSON document instead of a table")
    return common


def _launch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="the JMeter plan (.jmx)")
    parser.add_argument("--provider", required=True, help="provider name or id")
    parser.add_argument(
        "--containers", required=True, type=int, help="JMeter containers, spread evenly over its agents"
    )
    parser.add_argument("--users", type=int, help="threads per container (sets -Jusers)")
    parser.add_argument("--duration", type=int, help="seconds (sets -Jduration)")
    parser.add_argument("--rampup", type=int, help="seconds (sets -Jrampup)")
    parser.add_argument("--image", help="JMeter image (default: the server's)")
    parser.add_argument(
        "-J", dest="property", action="append", metavar="KEY=VALUE", help="a JMeter property; repeatable"
    )
    parser.add_argument("--name", help="name of the test (default: the plan's file name)")
    parser.add_argument(
        "--criteria",
        action="append",
        metavar="EXPR",
        help="a pass/fail criterion, e.g. 'p95<500ms', 'errors<1%%', 'hits/s>100', "
        "'avg of login<200ms for 30s'; repeatable (see below)",
    )
    parser.add_argument("--locations", help="only agents in these locations, comma-separated")
    parser.add_argument(
        "--monitor",
        action="append",
        metavar="ID|NAME[,…]",
        help="a monitor (id or name, see the dashboard's :monitors) that runs during the test, its samples and "
        "alarms kept with it; repeatable or comma-separated. One the server does not know: exit 2, nothing launched",
    )
    parser.add_argument(
        "--stop-on-critical",
        action="store_true",
        help="stop the test (as failed) when one of its --monitor raises a critical alarm",
    )
    parser.add_argument(
        "--file",
        action="append",
        metavar="PATH[:split][:header]",
        help="a file the plan reads (CSV data set…), placed beside it; repeatable. Copied whole to every "
        "container, or with :split divided evenly between them by lines (:split:header keeps the first "
        "line on every share). Uploaded before the launch; deleted again if the server refuses it",
    )
    parser.add_argument(
        "--follow-timeout", type=float, default=120.0, metavar="SECONDS",
        help="once launched (run; launch --wait), how long the server may stay unreachable (or answer "
        "502/503/504) before giving up with exit 4; retried with backoff meanwhile (default: 120)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octotui",
        description="Run Apache JMeter load tests on your own machines: the dashboard, or one command at a time.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    dashboard = parser.add_argument_group("dashboard (octotui with no command)")
    add_options(dashboard, DASHBOARD_OPTIONS)  # type: ignore[arg-type]
    common = _common()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        epilog = f"examples:\n  {_EXAMPLES[name]}" if name in _EXAMPLES else None
        if name in ("run", "launch"):
            epilog = f"{epilog}\n\n{CRITERIA_HELP}\n\n{EXIT_CODES}"
        elif name == "compare":
            epilog = f"{epilog}\n\n{COMPARE_EXIT}"
        elif name in ("drain", "undrain"):
            epilog = f"{epilog}\n\n{DRAIN_EXIT}"
        return sub.add_parser(
            name, parents=[common], help=help_text, description=help_text, epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip

    add("providers", "list the providers (groups of agents)")
    agents = add("agents", "list the agents: status, CPU, memory, containers")
    agents.add_argument("--provider", help="only this provider's (name or id)")
    tests = add("tests", "list the tests, newest last")
    tests.add_argument("--last", type=int, metavar="N", help="every live test and only the N newest ended ones")
    test = add("test", "one test: state, figures, containers, per-label table, top errors")
    test.add_argument("id", help="test id")
    launch = add("launch", "launch a test and return (--wait: until its containers run)")
    _launch_options(launch)
    launch.add_argument("--wait", action="store_true", help="wait until every container runs (or the test ends)")
    stop = add("stop", "stop a test")
    stop.add_argument("id", help="test id")
    stop.add_argument("--wait", action="store_true", help="wait until the test has ended")
    run = add("run", "launch a test, follow it on one line, print its summary; exit code for CI")
    _launch_options(run)
    export = add("export", "download a test's export, streamed to a file")
    export.add_argument("id", help="test id")
    export.add_argument("--format", required=True, choices=("jtl", "csv", "junit", "html"))
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write, '-' for stdout")
    export.add_argument("--baseline", metavar="ID", help="html: add a 'Compared with' section against this test")
    compare = add("compare", "each label of a test against an earlier one (the baseline); exit 1 on a regression")
    from octotui.commands.comparing import add_options as compare_options

    compare_options(compare)
    drain = add("drain", "take an agent out of service: no new containers, its running ones finish")
    drain.add_argument("agent", help="agent name or id")
    undrain = add("undrain", "put a drained agent back in service")
    undrain.add_argument("agent", help="agent name or id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the subcommands; returns the exit code (see ``octotui --help``)."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    name = args.command
    if name is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        values = settings(args)
        spec, local = None, []
        if name in ("launch", "run"):
            from octotui.commands.files import parse_all
            from octotui.commands.launching import test_spec

            spec = test_spec(args)  # before any connection: a bad input launches nothing
            local = parse_all(args.file)
        if name in ("launch", "run") and not args.follow_timeout >= 0:  # NaN too
            raise Usage(f"--follow-timeout must be 0 or more seconds, not {args.follow_timeout}")
        if name == "export" and args.baseline is not None and args.format != "html":
            raise Usage("--baseline applies to --format html only (the report's 'Compared with' section)")
        keeps_running = name == "launch" and not args.wait
        with target(values, keeps_running=keeps_running) as where:
            if args.json and name in rawjson.COMMANDS:
                return rawjson.answer(where, args)
            return _client_command(args, where, spec, local)
    except Usage as exc:
        print(f"octotui {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"octotui {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _client_command(args: argparse.Namespace, where: Target, spec: TestCreate | None, local: list[LocalFile]) -> int:
    """Run a command through the client; its errors become :class:`Usage` (exit 2)."""
    import asyncio

    from octotui.client import ClientError, ServerUnreachable

    try:
        return asyncio.run(_dispatch(args, where, spec, local))
    except ServerUnreachable as exc:
        raise Usage(f"cannot reach the server: {exc.message}") from None
    except ClientError as exc:
        raise Usage(refusal(exc.message, exc.status)) from None


async def _dispatch(args: argparse.Namespace, where: Target, spec: TestCreate | None, local: list[LocalFile]) -> int:
    from octotui.client import Client
    from octotui.commands import listing
    from octotui.protocol import TestCreate

    async with Client(where.url, where.token, verify=where.verify) as client:
        name = args.command
        if name in ("drain", "undrain"):
            from octotui.commands.fleet import drain

            return await drain(client, args, undo=name == "undrain")
        if name == "providers":
            return await listing.providers(client, args)
        if name == "agents":
            return await listing.agents(client, args)
        if name == "tests":
            return await listing.tests(client, args)
        if name == "test":
            return await listing.test(client, args)
        if name == "export":
            from octotui.commands.exporting import export

            return await export(client, args, where)
        if name == "compare":
            from octotui.commands.comparing import compare

            return await compare(client, args)
        # Imported only by the commands that launch or stop (a listing starts a little faster).
        from octotui.commands import launching

        if name == "stop":
            return await launching.stop(client, args, where)
        assert isinstance(spec, TestCreate)
        if name == "launch":
            return await launching.launch(client, args, where, spec, local)
        return await launching.run(client, args, where, spec, local)


__all__ = ["NAMES", "build_parser", "main"]
