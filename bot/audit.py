"""Who did what from the chat, and what came of it, in the control DB."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Text,
    insert,
    select,
)
from sqlalchemy import Table as SATable

from supervisor.dbengine import create_tables

log = logging.getLogger("bot")
metadata = MetaData()

audit_log = SATable(
    "bot_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("chat_id", BigInteger),  # group ids exceed 32 bits
    Column("user_id", BigInteger),
    Column("user", String(128)),
    Column("command", String(32), nullable=False),
    Column("workflow", String(128), index=True),
    Column("args", Text, nullable=False),
    Column("outcome", String(16), nullable=False),  # ok, refused, ignored, failed
    Column("detail", Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who sent a command: a Telegram user in a chat, or the console."""

    chat_id: int | None
    user_id: int | None
    name: str


CONSOLE = Actor(None, None, "console")


class AuditLog:
    """Blocking, like any query: a caller on the event loop runs it in a thread (bot.commands)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine, metadata)

    def record(
        self,
        actor: Actor,
        command: str,
        args: list[str],
        *,
        outcome: str,
        detail: str,
        workflow: str | None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit_log).values(
                    time=datetime.now(UTC),
                    chat_id=actor.chat_id,
                    user_id=actor.user_id,
                    user=actor.name,
                    command=command,
                    workflow=workflow,
                    args=" ".join(args),
                    outcome=outcome,
                    detail=detail[:500],
                )
            )

    async def record_soon(
        self,
        actor: Actor,
        command: str,
        args: list[str],
        *,
        outcome: str,
        detail: str,
        workflow: str | None,
    ) -> None:
        """``record`` off the event loop (the control DB may be slow or locked); a failed
        write is logged, never raised: the command it records has been done already."""
        try:
            await asyncio.to_thread(
                self.record, actor, command, args, outcome=outcome, detail=detail, workflow=workflow
            )
        except Exception:
            log.exception("audit log write failed")

    def recent(self, workflow: str, limit: int = 5) -> list[str]:
        """One line per recent command about ``workflow``, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_log.c.time, audit_log.c.user, audit_log.c.command, audit_log.c.outcome)
                .where(audit_log.c.workflow == workflow)
                .order_by(audit_log.c.id.desc())
                .limit(limit)
            ).all()
        return [
            f"{row.time:%m-%d %H:%M} {row.user}: /{row.command} → {row.outcome}" for row in rows
        ]
