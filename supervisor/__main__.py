"""``python -m supervisor run [--json]`` (headless) and ``python -m supervisor status``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import UTC, datetime

from supervisor.config import ResolvedWorkflow
from supervisor.core import Supervisor
from supervisor.eventcodec import encode_event
from supervisor.pidfiles import group_alive, read_pidfiles
from supervisor.settings import SupervisorSettings
from supervisor.startup import StartupError, load_supervision
from supervisor.statedb import read_state

EXIT_CONFIG = 2


async def _run(
    settings: SupervisorSettings, workflows: list[ResolvedWorkflow], as_json: bool
) -> None:
    supervisor = Supervisor(settings, workflows)
    subscription = supervisor.events()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def printer() -> None:
        async for event in subscription:
            if as_json:
                print(encode_event(event), flush=True)
            else:
                stamp = event.time.astimezone(UTC).strftime("%H:%M:%S")
                print(f"{stamp} {event.workflow} {event.kind}: {event.detail}", flush=True)

    printing = asyncio.create_task(printer())
    await supervisor.startup()
    await stop.wait()
    await supervisor.shutdown()
    await printing


def _status(settings: SupervisorSettings, workflows: list[ResolvedWorkflow]) -> None:
    """Every workflow's state straight from the files: works with no supervisor running."""
    pids = read_pidfiles(settings.run_dir)
    now = datetime.now(UTC)
    for workflow in workflows:
        snapshot = read_state(workflow.db)
        record = pids.get(workflow.name)
        alive = record is not None and group_alive(record.pgid)
        process = f"pid {record.pid}" if record and alive else "not running"
        age = (
            f"{(now - snapshot.heartbeat).total_seconds():.0f}s ago"
            if snapshot.heartbeat
            else "never"
        )
        print(
            f"{workflow.name}: {snapshot.status or '-'} ({process}, heartbeat {age})"
            f"{' paused' if snapshot.paused else ''}"
        )
        if snapshot.summary:
            print(f"  {snapshot.summary}")
        if snapshot.problem:
            print(f"  problem: {snapshot.problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor", description="Supervise the workflows without Telegram."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="supervise the configured workflows, printing each event")
    run.add_argument("--json", action="store_true", help="one JSON object per event")
    commands.add_parser("status", help="print every workflow's state from its files")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings, workflows = load_supervision(check_control_db=args.command == "run")
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "status":
        _status(settings, workflows)
        return 0
    asyncio.run(_run(settings, workflows, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
