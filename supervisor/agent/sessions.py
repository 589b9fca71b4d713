"""Bridge sessions in the control DB, so a conversation outlives a restart of the bot.

A session is one conversation about one workflow in one chat (a forum topic
is a chat of its own here). Its whole history is stored, as the Messages
API takes it, because each turn sends all of it (no server-side thread
state, so any ``ANTHROPIC_BASE_URL`` gateway works); Claude Code keeps its
own history, and only its session id is stored.

``busy`` is set while a turn runs and cleared when it ends; one still set
at start was cut off by a restart (``interrupted``), so the chat can say so.
``closed`` is set by ``/new``: the chat's next message starts afresh, while a
reply to one of the closed session's answers still continues it.

Blocking calls: run them off the event loop.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from supervisor.agent.types import Backend, Session
from supervisor.dbengine import create_tables

TITLE_CLIP = 60

metadata = sa.MetaData()
sessions = sa.Table(
    "agent_sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("chat", sa.String(64), nullable=False, index=True),
    sa.Column("workflow", sa.String(255), nullable=False),
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("history", sa.Text, nullable=False),  # JSON list of Messages API params
    sa.Column("resume_id", sa.String(255)),
    sa.Column("allowed", sa.Text, nullable=False),  # JSON list of action kinds
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("turns", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False, index=True),
    sa.Column("busy", sa.Boolean, nullable=False),
    sa.Column("closed", sa.Boolean, nullable=False),
)


class SessionStore:
    """Sessions by id and by chat."""

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        create_tables(engine, metadata)

    def create(self, chat: str, workflow: str, backend: Backend, title: str = "") -> Session:
        """A new open session for ``chat``; the chat's earlier ones are closed."""
        now = self.clock()
        session = Session(
            id=uuid.uuid4().hex[:12],
            chat=chat,
            workflow=workflow,
            backend=backend,
            title=" ".join(title.split())[:TITLE_CLIP],
            created_at=now,
            updated_at=now,
        )
        with self.engine.begin() as conn:
            conn.execute(sa.update(sessions).where(sessions.c.chat == chat).values(closed=True))
            conn.execute(sa.insert(sessions).values(**_columns(session), busy=False, closed=False))
        return session

    def get(self, session_id: str) -> Session | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sessions).where(sessions.c.id == session_id)).first()
        return _session(row) if row is not None else None

    def current(self, chat: str) -> Session | None:
        """The chat's open session, the one its next message continues."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(sessions)
                .where(sessions.c.chat == chat, sessions.c.closed.is_(False))
                .order_by(sessions.c.updated_at.desc())
                .limit(1)
            ).first()
        return _session(row) if row is not None else None

    def recent(self, chat: str, limit: int = 10) -> list[Session]:
        """The chat's latest sessions, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sessions)
                .where(sessions.c.chat == chat)
                .order_by(sessions.c.updated_at.desc())
                .limit(limit)
            ).all()
        return [_session(row) for row in rows]

    def close(self, chat: str) -> int:
        """``/new``: the chat's next message starts a fresh session."""
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.update(sessions)
                .where(sessions.c.chat == chat, sessions.c.closed.is_(False))
                .values(closed=True)
            )
        return int(result.rowcount or 0)

    def reopen(self, session: Session) -> None:
        """A reply to an old answer: that session becomes the chat's open one again."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(sessions).where(sessions.c.chat == session.chat).values(closed=True)
            )
            conn.execute(
                sa.update(sessions)
                .where(sessions.c.id == session.id)
                .values(closed=False, updated_at=self.clock())
            )

    def save(self, session: Session, *, busy: bool) -> None:
        """Store the session as it is now; ``busy`` while a turn of it runs."""
        session.updated_at = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(sessions)
                .where(sessions.c.id == session.id)
                .values(**_columns(session), busy=busy)
            )

    def interrupted(self) -> list[Session]:
        """Sessions whose turn a restart cut off; they are marked idle as they are returned."""
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(sessions).where(sessions.c.busy.is_(True))).all()
            conn.execute(sa.update(sessions).where(sessions.c.busy.is_(True)).values(busy=False))
        return [_session(row) for row in rows]


def _columns(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "chat": session.chat,
        "workflow": session.workflow,
        "backend": session.backend,
        "history": json.dumps(session.history),
        "resume_id": session.resume_id,
        "allowed": json.dumps(sorted(session.allowed)),
        "title": session.title,
        "turns": session.turns,
        "input_tokens": session.input_tokens,
        "output_tokens": session.output_tokens,
        "cost_usd": session.cost_usd,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
    }


def _session(row: Any) -> Session:
    return Session(
        id=row.id,
        chat=row.chat,
        workflow=row.workflow,
        backend=row.backend,
        history=json.loads(row.history),
        resume_id=row.resume_id,
        allowed=set(json.loads(row.allowed)),
        title=row.title,
        turns=row.turns,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cost_usd=row.cost_usd,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
