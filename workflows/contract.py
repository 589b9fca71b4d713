"""The state-table contract between a workflow and its supervisor.

Any process, in any language, that keeps this table up to date can be
supervised. This module is the single definition of the table, its keys and
its timestamp formats; the workflow library writes through it and the
supervisor reads through it. It imports nothing heavy on purpose, so the
supervisor can use it without loading the authoring library.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal, get_args

STATE_TABLE_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS state ("
    "key TEXT PRIMARY KEY, value TEXT NOT NULL, "
    "updated_at TEXT DEFAULT (datetime('now')))"
)
UPSERT_STATE_SQL: Final = (
    "INSERT OR REPLACE INTO state (key, value, updated_at) VALUES (?, ?, datetime('now'))"
)

# Optional: every error in order, so two errors written within one supervisor
# poll are both reported. Writers that only set supervisor.last_error still work.
ERRORS_TABLE_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS supervisor_errors ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL, "
    "created_at TEXT DEFAULT (datetime('now')))"
)
INSERT_ERROR_SQL: Final = "INSERT INTO supervisor_errors (text) VALUES (?)"
ERRORS_KEPT: Final = 1000
TRIM_ERRORS_SQL: Final = (
    "DELETE FROM supervisor_errors WHERE id <= (SELECT MAX(id) FROM supervisor_errors) - ?"
)

# A workflow's name is a file name, a chat command argument and button data:
# at most 48 characters, so "restart:<name>" fits Telegram's 64 bytes.
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$"

STATUS_KEY: Final = "supervisor.status"
SUMMARY_KEY: Final = "supervisor.summary"
HEARTBEAT_KEY: Final = "supervisor.heartbeat"
LAST_ERROR_KEY: Final = "supervisor.last_error"
PAUSED_KEY: Final = "supervisor.paused"
CONTRACT_KEYS: Final = (STATUS_KEY, SUMMARY_KEY, HEARTBEAT_KEY, LAST_ERROR_KEY, PAUSED_KEY)

# Optional: a file the supervisor names for each process it starts. Touching it (its
# mtime) is a heartbeat the supervisor looks at only when it needs to (a hang check,
# /status, a start waiting for its first beat), where a heartbeat written to the table is
# a write it must read at once (nothing else tells it from an error). The later of the
# two counts.
HEARTBEAT_FILE_ENV: Final = "WORKFLOW_HEARTBEAT_FILE"

# Optional: what the workflow's agents used so far in this run, cumulative (a new run starts
# again from 0). Integers of tokens and a decimal of USD; the supervisor turns the increases
# into each day's spend and holds the workflow to its ``budget_usd_per_day``.
INPUT_TOKENS_KEY: Final = "agent.input_tokens"
OUTPUT_TOKENS_KEY: Final = "agent.output_tokens"
COST_KEY: Final = "agent.cost_usd"
USAGE_KEYS: Final = (INPUT_TOKENS_KEY, OUTPUT_TOKENS_KEY, COST_KEY)

Status = Literal["idle", "running", "error", "done"]
STATUSES: Final[tuple[str, ...]] = get_args(Status)


def format_timestamp(moment: datetime | None = None) -> str:
    """The form this library writes: ISO-8601 UTC with milliseconds and an offset."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_timestamp(text: str) -> datetime:
    """Parse any of the three forms writers use, as an aware UTC datetime.

    JavaScript's ``2026-11-24T11:42:15.963Z``, Python's
    ``2026-11-24T11:42:15.963+00:00`` and SQLite's ``2026-11-24 11:42:15``
    (which is UTC without saying so). Raises ``ValueError`` for anything else.
    """
    cleaned = text.strip()
    if not cleaned:
        raise ValueError("empty timestamp")
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
