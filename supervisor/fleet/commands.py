"""Commands for another node: rows in ``fleet_commands``, claimed by the node running the workflow.

The poller's node inserts a row and NOTIFYs ``cmd:<node>`` in the same
transaction (Postgres delivers a notification at commit); the owner claims
its queued rows with ``FOR UPDATE SKIP LOCKED`` (woken by the notification,
or by its own poll if one was missed), runs each on its own supervisor, and
stores the answer with a ``done:<id>`` notification. A row older than
``COMMAND_TTL_SECONDS`` when its node gets to it is expired, not run: a
``/restart`` typed minutes ago, while the node was away, is not done late.

Every verb and how its answer travels as JSON is in ``VERBS``, the one list
of what may cross nodes; the agent bridge is not in it (a conversation works
in the workflow's directory: it stays with the node that serves the chat).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.dialects.postgresql import insert

from supervisor.api import SupervisorError
from supervisor.diagnosis.types import EvidencePack, Verdict
from supervisor.events import EventRecord, WorkflowStatus
from supervisor.fleet.tables import CHANNEL, commands
from supervisor.heal.store import Proposal

if TYPE_CHECKING:
    from supervisor.api import SupervisorAPI

log = logging.getLogger("supervisor.fleet")

COMMAND_TTL_SECONDS = 60.0  # not run at all if its node gets to it later than this
CLAIM_LIMIT = 20
QUEUED, RUNNING, DONE, FAILED, EXPIRED = "queued", "running", "done", "failed", "expired"


@dataclass(frozen=True, slots=True)
class Verb:
    """How the owner runs a verb on its supervisor, and how the answer travels."""

    run: Callable[[SupervisorAPI, dict[str, Any]], Awaitable[Any]]
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    wait_seconds: float = 60.0  # how long the asking node waits for the answer
    # It changes something: asked within a chat request, it is keyed (``requests``) and
    # recorded even when it runs on the asking node, so a replay never runs it twice.
    mutates: bool = False


def _adapted(kind: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    adapter: TypeAdapter[Any] = TypeAdapter(kind)
    return (lambda value: adapter.dump_python(value, mode="json")), adapter.validate_python


def _lifecycle(verb: str) -> Verb:
    async def run(api: SupervisorAPI, args: dict[str, Any]) -> Any:
        return await getattr(api, verb)(args["name"])

    return Verb(run, *_adapted(WorkflowStatus), mutates=True)


def _budget(verb: str) -> Verb:
    """A budget button (resume once, raise ×2): by workflow, with its approver."""

    async def run(api: SupervisorAPI, args: dict[str, Any]) -> Any:
        return await getattr(api, verb)(args["name"], args["approver"])

    return Verb(run, *_adapted(WorkflowStatus), mutates=True)


async def _status(api: SupervisorAPI, args: dict[str, Any]) -> Any:
    return await api.status(args["name"])


async def _tail(api: SupervisorAPI, args: dict[str, Any]) -> Any:
    return await api.tail(args["name"], int(args["lines"]))


async def _log_bytes(api: SupervisorAPI, args: dict[str, Any]) -> Any:
    return await api.log_bytes(args["name"], int(args["limit"]))


async def _why(api: SupervisorAPI, args: dict[str, Any]) -> Any:
    return await api.why(args["name"])


async def _evidence(api: SupervisorAPI, args: dict[str, Any]) -> Any:
    return await api.evidence(args["name"])


async def _recent(api: SupervisorAPI, args: dict[str, Any]) -> Any:
    return await api.recent_events(args["name"], int(args["limit"]))


async def _fix(api: SupervisorAPI, args: dict[str, Any]) -> Any:
    return await api.fix(args["name"], args.get("note"))


def _decision(verb: str) -> Callable[[SupervisorAPI, dict[str, Any]], Awaitable[Any]]:
    """A heal button (apply, reject, roll back): by proposal id, with its approver."""

    async def run(api: SupervisorAPI, args: dict[str, Any]) -> Any:
        return await getattr(api, verb)(args["proposal"], args["approver"])

    return run


async def _patch(api: SupervisorAPI, args: dict[str, Any]) -> Any:
    return await api.heal_patch(args["proposal"])


VERBS: dict[str, Verb] = {
    **{verb: _lifecycle(verb) for verb in ("start", "stop", "restart", "pause", "resume")},
    **{verb: _budget(verb) for verb in ("budget_resume", "budget_raise")},
    "status": Verb(_status, *_adapted(list[WorkflowStatus])),
    "tail": Verb(_tail, *_adapted(list[str])),
    "log_bytes": Verb(_log_bytes, lambda data: base64.b64encode(data).decode(), base64.b64decode),
    "why": Verb(_why, *_adapted(Verdict), wait_seconds=180.0),
    "evidence": Verb(_evidence, *_adapted(EvidencePack)),
    "recent_events": Verb(_recent, *_adapted(list[EventRecord])),
    # Heal runs where the workflow runs (its worktree, its smoke run): a fix takes minutes.
    "fix": Verb(_fix, *_adapted(Proposal), wait_seconds=900.0, mutates=True),
    "heal_apply": Verb(
        _decision("heal_apply"), *_adapted(Proposal), wait_seconds=180.0, mutates=True
    ),
    "heal_reject": Verb(_decision("heal_reject"), *_adapted(Proposal), mutates=True),
    "heal_rollback": Verb(
        _decision("heal_rollback"), *_adapted(str), wait_seconds=180.0, mutates=True
    ),
    "heal_patch": Verb(
        _patch,
        lambda patch: [patch[0], base64.b64encode(patch[1]).decode()],
        lambda pair: (pair[0], base64.b64decode(pair[1])),
    ),
}


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    verb: str
    args: dict[str, Any]


def notify(conn: sa.Connection, payload: str) -> None:
    """Wake the listeners at this transaction's commit."""
    conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload)))


def submit(
    conn: sa.Connection,
    node: str,
    verb: str,
    args: dict[str, Any],
    *,
    request: str | None = None,
    state: str = QUEUED,
) -> tuple[int, bool]:
    """Queue ``verb`` for ``node`` and wake it (``state`` RUNNING: record it as run by the
    asking node itself); the row's id, to wait on, and whether it is new.

    A ``request`` key already given (the request is handled again after a failover)
    is that row, unless the handler asked something else this time.
    """
    if verb not in VERBS:
        raise ValueError(f"not a fleet verb: {verb}")
    row = {"node": node, "verb": verb, "args": json.dumps(args), "state": state}
    inserted = conn.execute(
        insert(commands)
        .values(**row, request=request, created_at=sa.func.now())
        .on_conflict_do_nothing(index_elements=[commands.c.request])
        .returning(commands.c.id)
    ).scalar()
    if inserted is None:
        known = conn.execute(
            sa.select(commands.c.id, commands.c.node, commands.c.verb).where(
                commands.c.request == request
            )
        ).one()
        if (known.node, known.verb) == (node, verb):
            return int(known.id), False
        log.warning("fleet: request %s asks %s, not %s: a new command", request, verb, known.verb)
        return submit(conn, node, verb, args, state=state)
    if state == QUEUED:
        notify(conn, f"cmd:{node}")
    return int(inserted), True


def claim(conn: sa.Connection, node: str) -> list[Claimed]:
    """Take this node's queued commands (expiring the stale ones first), oldest first."""
    stale = sa.func.now() - timedelta(seconds=COMMAND_TTL_SECONDS)
    expired = conn.execute(
        sa.update(commands)
        .where(commands.c.node == node, commands.c.state == QUEUED, commands.c.created_at < stale)
        .values(state=EXPIRED, finished_at=sa.func.now())
        .returning(commands.c.id, commands.c.verb)
    ).all()
    for row in expired:
        log.warning("fleet: command %d (%s) came too late; not run", row.id, row.verb)
        notify(conn, f"done:{row.id}")
    rows = conn.execute(
        sa.select(commands.c.id, commands.c.verb, commands.c.args)
        .where(commands.c.node == node, commands.c.state == QUEUED)
        .order_by(commands.c.id)
        .limit(CLAIM_LIMIT)
        .with_for_update(skip_locked=True)
    ).all()
    if rows:
        conn.execute(
            sa.update(commands)
            .where(commands.c.id.in_([row.id for row in rows]))
            .values(state=RUNNING)
        )
    return [Claimed(int(row.id), row.verb, json.loads(row.args)) for row in rows]


def abandon_running(conn: sa.Connection, node: str) -> int:
    """At a node's start: commands its previous run took but never answered failed."""
    done = conn.execute(
        sa.update(commands)
        .where(commands.c.node == node, commands.c.state == RUNNING)
        .values(
            state=FAILED,
            result=json.dumps({"error": f"node {node} restarted while running it"}),
            finished_at=sa.func.now(),
        )
        .returning(commands.c.id)
    ).all()
    for row in done:
        notify(conn, f"done:{row.id}")
    return len(done)


async def execute(api: SupervisorAPI, claimed: Claimed) -> tuple[str, str]:
    """Run one claimed command on the local supervisor: its final state and JSON answer."""
    verb = VERBS.get(claimed.verb)
    if verb is None:
        return FAILED, json.dumps({"error": f"this node does not know {claimed.verb!r}"})
    try:
        value = await verb.run(api, claimed.args)
    except SupervisorError as exc:
        return FAILED, json.dumps({"error": str(exc)})
    except Exception as exc:
        log.exception("fleet: command %d (%s) failed", claimed.id, claimed.verb)
        return FAILED, json.dumps({"error": f"it failed there: {type(exc).__name__}"})
    return DONE, json.dumps({"value": verb.encode(value)})


def finish(conn: sa.Connection, command_id: int, state: str, result: str) -> None:
    conn.execute(
        sa.update(commands)
        .where(commands.c.id == command_id)
        .values(state=state, result=result, finished_at=sa.func.now())
    )
    notify(conn, f"done:{command_id}")


def outcome(conn: sa.Connection, command_id: int) -> tuple[str, str | None]:
    """The command's state and its JSON answer (None until finished)."""
    row = conn.execute(
        sa.select(commands.c.state, commands.c.result).where(commands.c.id == command_id)
    ).one()
    return str(row.state), row.result


def answer(verb: str, state: str, result: str | None, node: str) -> Any:
    """The value a finished command returned, or its refusal raised as ``SupervisorError``."""
    if state == EXPIRED:
        raise SupervisorError(f"node {node} did not get to it in time; not done")
    parsed = json.loads(result or "{}")
    if "error" in parsed:
        raise SupervisorError(str(parsed["error"]))
    return VERBS[verb].decode(parsed["value"])


def prune(conn: sa.Connection, older_than_seconds: float) -> None:
    cutoff = sa.func.now() - timedelta(seconds=older_than_seconds)
    conn.execute(
        sa.delete(commands).where(
            commands.c.state.in_([DONE, FAILED, EXPIRED]), commands.c.created_at < cutoff
        )
    )
