"""``python -m supervisor run [--json]`` (headless) and ``python -m supervisor status``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from supervisor.agentsettings import AgentSettings
from supervisor.beats import beat_file, last_beat, later
from supervisor.config import ResolvedWorkflow
from supervisor.control import ControlDB, ControlDBError, Memory
from supervisor.core import Supervisor
from supervisor.dbengine import make_engine
from supervisor.diagnosis.diagnose import Diagnoser
from supervisor.diagnosis.why import EVIDENCE_EVENTS, Case, explain, plain_text, verdict_json
from supervisor.eventcodec import encode_event
from supervisor.events import LIVE_STATES, STATE_LABELS, ProcessState, WorkflowStatus, own_word
from supervisor.fdlimit import raise_fd_limit
from supervisor.fleet.node import FleetNode
from supervisor.fleet.registry import FleetRefused
from supervisor.observe.observer import Observer
from supervisor.observe.settings import MetricsSettings
from supervisor.pidfiles import group_alive, read_pidfiles
from supervisor.secrets import Redactor, secret_values
from supervisor.settings import FleetSettings, SupervisorSettings, one_line
from supervisor.startup import StartupError, load_supervision
from supervisor.statedb import StateSnapshot, read_state

EXIT_CONFIG = 2


async def _run(
    settings: SupervisorSettings,
    workflows: list[ResolvedWorkflow],
    as_json: bool,
    metrics_addr: str | None = None,
) -> None:
    """``metrics_addr``: where ``/metrics``, ``/healthz`` and ``/readyz`` listen (None: off)."""
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
    node = _headless_node(settings, supervisor)
    if node is not None:
        await supervisor.open()
        await node.join()  # FleetRefused: a name clash, before any workflow starts
    observer, engine = None, None
    if metrics_addr:  # before the workflows start: every event is counted
        url = settings.control_db_url
        engine = make_engine(url)
        observer = Observer(metrics_addr, supervisor, engine, url, settings.node)
        await observer.start()
    await supervisor.startup()
    if observer is not None:
        observer.ready()
    if node is not None:
        await node.start()
    await stop.wait()
    if observer is not None:
        observer.stopping()
    await supervisor.shutdown()
    if node is not None:
        await node.leave()
    if observer is not None:
        await observer.stop()
    if engine is not None:
        engine.dispose()
    await printing


def _headless_node(settings: SupervisorSettings, supervisor: Supervisor) -> FleetNode | None:
    """In a fleet (Postgres): a node that never polls Telegram; the poller turns its events
    into alerts and sends it the commands for its workflows."""
    if not settings.fleet:
        return None
    engine = make_engine(settings.control_db_url)
    return FleetNode(
        engine,
        settings.control_db_url,
        settings.node,
        FleetSettings(),
        supervisor,
        can_lead=False,
        forwards=False,
    )


def _status(settings: SupervisorSettings, workflows: list[ResolvedWorkflow]) -> None:
    """Every workflow's state straight from the files: works with no supervisor running.

    The words are the chat's (``STATE_LABELS``); what a supervisor alone
    knows (backing off) cannot be told from the files, and what it remembers
    (a give-up) is read from the control DB when there is one.
    """
    for status in _offline_statuses(settings, workflows):
        icon, word = STATE_LABELS[status.state]
        line = f"{icon} {status.name}: {word}"
        says = own_word(status.state, status.status)
        line += f" · says {says}" if says else ""
        if status.pid is not None:
            line += f" · pid {status.pid} · heartbeat {_age(status.heartbeat_age)}"
        print(line)
        if status.summary:
            print(f"  {status.summary}")
        if status.db_problem:
            print(f"  problem: {status.db_problem}")


async def _why(
    settings: SupervisorSettings, workflows: list[ResolvedWorkflow], name: str, *, as_json: bool
) -> int:
    """``/why`` from the files, with or without a supervisor running."""
    workflow = next((w for w in workflows if w.name == name), None)
    if workflow is None:
        known = ", ".join(w.name for w in workflows) or "none configured"
        print(f"error: unknown workflow {name!r}; known: {known}", file=sys.stderr)
        return EXIT_CONFIG
    control = ControlDB(settings.control_db_url)
    try:
        agent = AgentSettings()
        redactor = Redactor(secret_values(settings, agent))
        events = control.recent(name, EVIDENCE_EVENTS)
        case = Case(
            workflow,
            _offline_statuses(settings, [workflow])[0],
            events,
            settings.logs_dir / f"{name}.log",
        )
        verdict = await explain(case, Diagnoser(agent, control.engine, redactor=redactor), redactor)
    finally:
        control.close()
    print(json.dumps(verdict_json(verdict)) if as_json else plain_text(verdict))
    return 0


def _offline_statuses(
    settings: SupervisorSettings, workflows: list[ResolvedWorkflow]
) -> list[WorkflowStatus]:
    """Each workflow's status as the files show it (no supervisor is asked)."""
    pids = read_pidfiles(settings.run_dir)
    remembered = _memory(settings)
    now = datetime.now(UTC)
    statuses = []
    for workflow in workflows:
        snapshot = read_state(workflow.db)
        beat = later(snapshot.heartbeat, last_beat(beat_file(settings.run_dir, workflow.name)))
        snapshot = replace(snapshot, heartbeat=beat)
        record = pids.get(workflow.name)
        alive = record is not None and group_alive(record.pgid)
        memory = remembered.get(workflow.name)
        state = offline_state(alive, snapshot, memory, workflow.hang_threshold_seconds, now)
        age = (now - snapshot.heartbeat).total_seconds() if snapshot.heartbeat else None
        statuses.append(
            WorkflowStatus(
                name=workflow.name,
                state=state,
                status=snapshot.status,
                summary=snapshot.summary,
                heartbeat=snapshot.heartbeat,
                heartbeat_age=age,
                last_error=snapshot.last_error,
                pid=record.pid if record is not None and state in LIVE_STATES else None,
                restarts=memory.restarts if memory else 0,
                max_restarts=workflow.max_restart_attempts,
                db_problem=snapshot.problem,
            )
        )
    return statuses


def offline_state(
    alive: bool,
    snapshot: StateSnapshot,
    memory: Memory | None,
    hang_threshold: float,
    now: datetime,
) -> ProcessState:
    """The process state the files show, in the supervisor's vocabulary."""
    if alive:
        if snapshot.heartbeat is None:
            return "starting"
        silent = (now - snapshot.heartbeat).total_seconds()
        return "hung" if silent > hang_threshold else "running"
    if snapshot.paused or (memory is not None and memory.paused):
        return "paused"
    if memory is not None and memory.held is not None:
        return memory.held
    return "finished" if snapshot.status == "done" else "stopped"


def _memory(settings: SupervisorSettings) -> dict[str, Memory]:
    """What the control DB remembers, if there is one (a status never creates it)."""
    url = make_url(settings.control_db_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return {}
    try:
        control = ControlDB(settings.control_db_url)
    except ControlDBError as exc:
        print(f"(control DB not read: {exc})", file=sys.stderr)
        return {}
    try:
        return control.load_memory()
    finally:
        control.close()


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.0f}s ago"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor", description="Supervise the workflows without Telegram."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="supervise the configured workflows, printing each event")
    run.add_argument("--json", action="store_true", help="one JSON object per event")
    commands.add_parser("status", help="print every workflow's state from its files")
    why = commands.add_parser("why", help="explain a workflow's failure from its evidence")
    why.add_argument("name", help="the workflow")
    why.add_argument("--json", action="store_true", help="the verdict as one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings, workflows = load_supervision(
            check_control_db=args.command in ("run", "why"), models=(MetricsSettings,)
        )
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "status":
        _status(settings, workflows)
        return 0
    if args.command == "why":
        return asyncio.run(_why(settings, workflows, args.name, as_json=args.json))
    try:
        metrics_addr = MetricsSettings().metrics_addr
    except ValidationError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    raise_fd_limit(len(workflows))
    try:
        asyncio.run(_run(settings, workflows, args.json, metrics_addr))
    except FleetRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
