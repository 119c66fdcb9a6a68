"""The ``ssa`` command line: a thin face over ingest, detectors, streams, dashboards and infra.

Each subcommand parses its arguments and calls the package that owns the work. Expected failures
(a service down, a bad argument, a malformed file) end in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from infra.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, Settings], int]


class CliError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from infra.services import up

    for st in up(settings):
        print(st.line())
    return 0


def _cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from infra.services import down

    down(settings)
    return 0


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from infra.services import status

    states = status(settings)
    for st in states:
        print(st.line())
    return 0 if all(s.healthy for s in states) else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssa", description="Cloud security situational awareness pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "up", help="start the local Kafka and Elasticsearch, create topics and templates"
    ).set_defaults(handler=_cmd_up)
    sub.add_parser("down", help="stop what `ssa up` started").set_defaults(handler=_cmd_down)
    sub.add_parser("status", help="show the local services").set_defaults(handler=_cmd_status)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from infra.jars import JarsError
    from infra.process import ServiceError

    return (CliError, SettingsError, ServiceError, JarsError, FileNotFoundError, PermissionError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        handler: Handler = args.handler
        return handler(args, settings)
    except KeyboardInterrupt:
        print("ssa: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as exc:
        print(f"ssa {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
