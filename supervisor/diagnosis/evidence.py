"""The evidence pack: everything a diagnosis may rest on, gathered in code, no model.

``build_pack`` takes plain values (the workflow's config, its status row, its
recent events, its log's path) so the bot, the console, the CLI and the eval
set build packs the same way without a running supervisor. Every item has an
id a quote can cite: ``state``, ``event:1`` (1 is the newest), ``log:142``
(line 142 of the lines read from the end of the log), ``src/job.py:42``,
``config``, ``git:log``, ``git:diff``; log and source items are one line each
so a citation names the exact line.

Every item's text passes through the ``Redactor``, which is extended with
the workflow's own ``env`` values, so no caller can forget them. Source is
read only from the workflow's own files (under its ``cwd`` or its script's
directory, outside any virtualenv) and never from a deny-listed path.

The pack is capped at ``budget`` characters. What goes first: the diff
(shortened), then the log's context lines oldest first, then the tail
lines oldest first. Error lines, tracebacks and the supervisor's own marks
are never trimmed, which is why only the last ``ERROR_SITES`` error sites
are gathered at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import logs
from supervisor.config import ResolvedWorkflow
from supervisor.diagnosis import repo
from supervisor.diagnosis.failure import find_failure
from supervisor.diagnosis.tracebacks import Traceback, find_tracebacks
from supervisor.diagnosis.types import EvidenceItem, EvidenceKind, EvidencePack
from supervisor.events import EventRecord, WorkflowStatus
from supervisor.logs import MARK_TAG
from supervisor.secrets import REDACTED, Redactor, readable

DEFAULT_BUDGET = 24_000  # characters, about 6k tokens: room for the question and the answer
LOG_SCAN = 2000  # lines read from the end of the log
TAIL_LINES = 40
CONTEXT_LINES = 3  # around an error line, and around a traceback frame's line
ERROR_SITES = 8
MAX_LINE = 1000
MAX_EVENTS = 20
MAX_DIFF = 8000
_MIN_DIFF = 600
_MAX_SOURCE_BYTES = 2_000_000
_LIBRARY_DIRS = frozenset({"site-packages", "dist-packages", ".venv", "venv", "__pycache__"})
_ERROR_LINE = re.compile(
    r"Traceback \(most recent|Error\b|Exception\b|\bERROR\b|\bCRITICAL\b|\bFATAL\b|\bKilled\b"
    r"|command not found|No space left|database is locked|\[Errno|Error code: \d"
    r"|\bfailed\b|timed out|\b(?:401|403|429|5\d\d) [A-Z]",
)

# Trimming order, first to go first; ESSENTIAL is never trimmed.
_DIFF, _CONTEXT, _TAIL, ESSENTIAL = range(4)


@dataclass(slots=True)
class _Candidate:
    item: EvidenceItem
    rank: int


def build_pack(
    *,
    workflow: ResolvedWorkflow,
    status: WorkflowStatus,
    events: Sequence[EventRecord],
    log_path: Path,
    redactor: Redactor,
    budget: int = DEFAULT_BUDGET,
    git_timeout: float = repo.GIT_TIMEOUT,
) -> EvidencePack:
    """Gather, redact and cap the evidence about ``workflow``'s latest failure.

    ``events`` are the workflow's recent events, newest first.
    """
    redactor = redactor.including(workflow.secrets)
    lines = [_clip(line) for line in logs.tail(log_path, LOG_SCAN)]
    tracebacks = find_tracebacks(lines)
    failure = find_failure(lines, tracebacks, events, status)
    candidates = [
        _Candidate(_item(redactor, "state", "state", _render_status(status)), ESSENTIAL),
        *(
            _Candidate(_item(redactor, f"event:{n}", "event", render_event(e)), ESSENTIAL)
            for n, e in enumerate(events[:MAX_EVENTS], start=1)
        ),
        _Candidate(_item(redactor, "config", "config", _render_config(workflow)), ESSENTIAL),
        *_log_candidates(redactor, lines, tracebacks),
    ]
    if failure.traceback is not None:
        candidates += _source_candidates(redactor, workflow, failure.traceback)
    commits = repo.recent_commits(workflow.cwd, timeout=git_timeout)
    if commits:
        candidates.append(_Candidate(_item(redactor, "git:log", "git", commits), ESSENTIAL))
    diff = repo.diff_since(workflow.cwd, failure.healthy_since, timeout=git_timeout)
    if diff:
        text = _shorten(redactor.redact(diff), MAX_DIFF)
        candidates.append(_Candidate(EvidenceItem("git:diff", "git", text), _DIFF))
    return EvidencePack(
        workflow=workflow.name,
        items=tuple(c.item for c in _within(candidates, budget)),
        signature=failure.signature,
        code_version=_code_version(workflow, git_timeout),
        failures_with_signature=failure.count,
    )


def is_error_line(text: str) -> bool:
    """Whether a log line reports an error: kept whole in the pack, quoted by the rules."""
    return _ERROR_LINE.search(text) is not None


def _item(redactor: Redactor, item_id: str, kind: EvidenceKind, text: str) -> EvidenceItem:
    return EvidenceItem(item_id, kind, redactor.redact(text))


def _clip(line: str, limit: int = MAX_LINE) -> str:
    """A line cut in its middle to ``limit`` characters: its start and its end say the most."""
    if len(line) <= limit:
        return line
    half = (limit - 5) // 2
    return f"{line[:half]} […] {line[-half:]}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n[… diff cut]"


def _render_status(status: WorkflowStatus) -> str:
    fields: dict[str, Any] = {
        "state": status.state,
        "exit_code": status.exit_code,
        "status": status.status,
        "summary": status.summary,
        "heartbeat_age_seconds": None
        if status.heartbeat_age is None
        else round(status.heartbeat_age),
        "restarts": f"{status.restarts}/{status.max_restarts}" if status.restarts else None,
        "pid": status.pid,
        "paused": status.paused or None,
        "db_problem": status.db_problem,
        "last_error": status.last_error,
    }
    return "\n".join(f"{key}: {value}" for key, value in fields.items() if value is not None)


def render_event(event: EventRecord) -> str:
    """One event as a line, the same in the pack and in the model's events tool."""
    return f"{event.time.isoformat(timespec='seconds')} {event.kind}: {event.detail}"


def _render_config(workflow: ResolvedWorkflow) -> str:
    """The workflow's TOML table as written, ``env`` values replaced (the keys are telling)."""
    table = workflow.config.model_dump(mode="json", exclude_none=True)
    table["env"] = dict.fromkeys(workflow.config.env, REDACTED)
    lines = [f"{key} = {json.dumps(value)}" for key, value in table.items() if key != "env"]
    if table["env"]:
        pairs = ", ".join(f"{key} = {json.dumps(value)}" for key, value in table["env"].items())
        lines.append(f"env = {{ {pairs} }}")
    return "\n".join(["[[workflows]]", *lines])


def _log_candidates(
    redactor: Redactor, lines: Sequence[str], tracebacks: Sequence[Traceback]
) -> list[_Candidate]:
    """The tail, the last error sites with their context, the last traceback in full."""
    ranks = dict.fromkeys(range(max(len(lines) - TAIL_LINES, 0), len(lines)), _TAIL)
    sites = [i for i, line in enumerate(lines) if is_error_line(line) or MARK_TAG in line]
    essential = set(sites[-ERROR_SITES:])
    for site in essential:
        for index in range(max(site - CONTEXT_LINES, 0), min(site + CONTEXT_LINES + 1, len(lines))):
            ranks.setdefault(index, _CONTEXT)
    if tracebacks:
        essential.update(range(tracebacks[-1].start, tracebacks[-1].end + 1))
    ranks.update(dict.fromkeys(essential, ESSENTIAL))
    return [
        _Candidate(_item(redactor, f"log:{index + 1}", "log", lines[index]), rank)
        for index, rank in sorted(ranks.items())
    ]


def _source_candidates(
    redactor: Redactor, workflow: ResolvedWorkflow, traceback: Traceback
) -> list[_Candidate]:
    """The lines around each frame that is in the workflow's own, readable files."""
    found: dict[str, _Candidate] = {}
    for frame in traceback.frames:
        located = _own_file(workflow, Path(frame.file))
        if located is None:
            continue
        path, name = located
        try:
            if path.stat().st_size > _MAX_SOURCE_BYTES:
                continue
            source = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        low = max(frame.line - CONTEXT_LINES, 1)
        for number in range(low, min(frame.line + CONTEXT_LINES, len(source)) + 1):
            item_id = f"{name}:{number}"
            text = _clip(source[number - 1])
            found[item_id] = _Candidate(_item(redactor, item_id, "source", text), ESSENTIAL)
    return list(found.values())


def _own_file(workflow: ResolvedWorkflow, path: Path) -> tuple[Path, str] | None:
    """``(path, name relative to its root)`` for a file of the workflow's own, else None."""
    path = path if path.is_absolute() else workflow.cwd / path
    roots = [workflow.cwd, *([workflow.script.parent] if workflow.script else [])]
    for root in roots:
        if not readable(path, root=root):
            continue
        relative = path.resolve().relative_to(root.resolve())
        if _LIBRARY_DIRS.isdisjoint(relative.parts) and path.is_file():
            return path, relative.as_posix()
    return None


def _within(candidates: list[_Candidate], budget: int) -> list[_Candidate]:
    """The candidates, trimmed to ``budget`` characters in the module's order."""
    total = sum(len(c.item.text) for c in candidates)
    for candidate in candidates:
        if candidate.rank == _DIFF and total > budget:
            keep = max(len(candidate.item.text) - (total - budget), _MIN_DIFF)
            shorter = _shorten(candidate.item.text, keep)
            total -= len(candidate.item.text) - len(shorter)
            candidate.item = EvidenceItem(candidate.item.id, candidate.item.kind, shorter)
    dropped: set[int] = set()
    for rank in (_CONTEXT, _TAIL):
        for index, candidate in enumerate(candidates):
            if total <= budget:
                break
            if candidate.rank == rank:
                dropped.add(index)
                total -= len(candidate.item.text)
    return [c for index, c in enumerate(candidates) if index not in dropped]


def _code_version(workflow: ResolvedWorkflow, git_timeout: float) -> str | None:
    """git HEAD (with a digest of uncommitted edits), else a digest of the script."""
    version = repo.version(workflow.cwd, timeout=git_timeout)
    if version is not None:
        return version
    if workflow.script is None:
        return None
    try:
        return "sha256:" + hashlib.sha256(workflow.script.read_bytes()).hexdigest()[:16]
    except OSError:
        return None
