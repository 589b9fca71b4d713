"""``python -m workflows run FILE`` and ``python -m workflows new NAME``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from workflows.errors import WorkflowError
from workflows.loader import load_workflow
from workflows.templates import TEMPLATES, write_from_template

EXIT_USAGE = 2


def _parse_input(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise WorkflowError('--input must be a JSON object, like \'{"specPath": "SPEC.md"}\'')
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workflows", description="Run, resume or start a workflow file."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run or resume a workflow file")
    run.add_argument("file", type=Path)
    run.add_argument("--input", help="JSON object handed to the workflow as ctx.input")
    run.add_argument(
        "--db", type=Path, help="workflow database (default $WORKFLOW_DB, then .smithers/<name>.db)"
    )
    run.add_argument("--new-run", action="store_true", help="start fresh instead of resuming")
    new = commands.add_parser("new", help="write a new workflow file from a template")
    new.add_argument("name")
    # Not argparse ``choices``: an unknown template gets the one-line error the other mistakes get.
    new.add_argument("--template", default="demo", help=f"one of: {', '.join(TEMPLATES)}")
    new.add_argument("--output", type=Path, help="file to write (default <name>.py)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    try:
        if args.command == "new":
            written = write_from_template(args.name, args.template, args.output)
            print(f"wrote {written}; run it with: python -m workflows run {written}")
            return 0
        workflow = load_workflow(args.file)
        result = workflow.run(_parse_input(args.input), db=args.db, new_run=args.new_run)
    except WorkflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
