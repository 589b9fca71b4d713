"""Rules first: the failures that need no model, answered at once and for free.

``classify`` looks at how the process ended (the pack's signature) and then
at the newest log lines, the state row and the events, and answers with the
first rule that matches; each verdict quotes the line it rests on, verbatim
from the item it cites, so the evidence check holds for the rules too.

A rule only claims what its text proves; everything else is ``unknown``
(left to the model), quoting the last error line. Two decisions worth
knowing:

- A pydantic ``ValidationError`` on a model's reply (the workflows
  library's ``reply did not validate as …``) is a ``bug``: the library
  already retried the request, so what is wrong is the prompt or the
  schema, which is code. Whether a restart helps is left open (a model's
  reply varies).
- The same traceback signature 3 times or more is a deterministic ``bug``
  that restarts will not fix, unless the failing line reads configuration
  (``os.environ``, ``ctx.input``…), which makes it ``config``, or a text
  rule above said what it is (a 429 loop stays ``transient``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from supervisor.diagnosis.evidence import is_error_line
from supervisor.diagnosis.types import Category, Confidence, EvidencePack, Quote, Verdict

REPEATS_FOR_BUG = 3
MAX_QUOTES = 3
_KILLED = frozenset({"signal:SIGKILL", "exit:137", "exit:-9"})
_CONFIG_READ = re.compile(r"os\.environ|getenv\(|ctx\.input|\binput\[|config\[|settings\.")
_BAD_VALUE = frozenset({"ValueError", "KeyError", "FileNotFoundError", "ValidationError"})
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<type>[A-Za-z_]\w*(?:Error|Exception))\b")


@dataclass(frozen=True, slots=True)
class Answer:
    """What to say about a failure of one kind, and what to do next."""

    category: Category
    cause: str
    next_steps: tuple[str, ...]
    restart_helps: bool | None
    confidence: Confidence = "high"


@dataclass(frozen=True, slots=True)
class Rule:
    """A text that proves a category."""

    pattern: re.Pattern[str]
    answer: Answer


def _rule(
    category: Category,
    pattern: str,
    cause: str,
    *steps: str,
    restart_helps: bool | None,
    confidence: Confidence = "high",
) -> Rule:
    return Rule(re.compile(pattern), Answer(category, cause, steps, restart_helps, confidence))


# In priority order: when one line matches several, the first rule wins.
RULES: tuple[Rule, ...] = (
    _rule(
        "environment",
        r"ModuleNotFoundError|ImportError|command not found|could not start: ",
        "The workflow's environment is missing something it needs (a module or a program).",
        "Install what is missing in the workflow's environment (its venv or PATH)",
        "Look at the log",
        "Restart once it is installed",
        restart_helps=False,
    ),
    _rule(
        "credentials",
        r"AuthenticationError|PermissionDeniedError|authentication_error|permission_error"
        r"|invalid x-api-key|Error code: 40[13]\b|\b40[13] (?:Unauthorized|Forbidden)",
        "An API refused the workflow's credentials (401/403): a wrong, expired or revoked key.",
        "Check the key in .env",
        "Restart once the key is fixed",
        restart_helps=False,
    ),
    _rule(
        "bug",
        r"but the code now calls",
        "The code changed under a running run: a resumed run reached a different task "
        "where a finished one was recorded.",
        "Start over with --new-run, or restore the code the run started with",
        "Look at git:diff",
        restart_helps=False,
    ),
    _rule(
        "resource",
        r"No space left on device|Errno 28\b",
        "The disk is full (No space left on device).",
        "Free disk space where the workflow writes (its logs, its db, its cwd)",
        "Restart once there is room",
        restart_helps=False,
    ),
    _rule(
        "resource",
        r"database is locked",
        "A database the workflow uses was locked by another process or connection.",
        "Find what else holds the database (another copy, a long transaction)",
        "Restart",
        restart_helps=True,
        confidence="medium",
    ),
    _rule(
        "resource",
        r"Too many open files|Errno 24\b",
        "The workflow ran out of file descriptors (Too many open files).",
        "Look for files or connections it opens and never closes",
        "Restart",
        restart_helps=True,
    ),
    _rule(
        "bug",
        r"reply did not validate as|validation errors? for \w+",
        "A model's reply did not validate against the workflow's schema, after the "
        "library's own retries: the prompt or the schema needs to change.",
        "Look at the log for the field that failed",
        "Make the prompt ask for the schema's fields, or loosen the schema",
        restart_helps=None,
        confidence="medium",
    ),
    _rule(
        "transient",
        r"Error code: (?:429|5\d\d)\b|RateLimitError|rate_limit_error|[Rr]ate limit"
        r"|\b429 Too Many|overloaded_error|\bOverloaded\b|InternalServerError"
        r"|\b50[0234] (?:Internal|Bad Gateway|Service Unavailable|Gateway Timeout)"
        r"|Name or service not known|getaddrinfo|Temporary failure in name resolution"
        r"|nodename nor servname|APITimeoutError|ReadTimeout|ConnectTimeout|TimeoutError"
        r"|(?:Read|Connection|connect|Request) timed out|Connection reset by peer"
        r"|APIConnectionError",
        "A network or API failure outside the workflow (rate limit, overload, DNS or a "
        "timeout): a restart likely helps.",
        "Restart",
        "If it keeps coming, wait, or lower the request rate",
        restart_helps=True,
    ),
)
_KILLED_RULE = _rule(
    "killed",
    r"SIGKILL|code 137\b|\bKilled\b|Out of memory",
    "The process was killed by SIGKILL (exit 137), most likely by the kernel's "
    "out-of-memory killer.",
    "Check the machine's memory (dmesg shows the OOM killer)",
    "Lower the workflow's memory use",
    "Restart",
    restart_helps=None,
)
_HANG_RULE = _rule(
    "hang",
    r"no heartbeat|\bhung\b",
    "The process was alive but stopped heartbeating: a deadlock, an endless loop, a "
    "blocked call, or a dead heartbeat thread.",
    "Look at the log's last lines to see where it stopped",
    "Restart",
    restart_helps=None,
)
_CONFIG = Answer(
    "config",
    "The failing line reads the workflow's configuration (its env or input), and the "
    "value there is missing or wrong.",
    ("Check the workflow's env and input in supervisor.toml", "Restart once the value is fixed"),
    restart_helps=False,
    confidence="medium",
)
_UNKNOWN = Answer("unknown", "No rule recognises this failure.", ("Look at the log",), None, "low")


def classify(pack: EvidencePack) -> Verdict:
    """The rules' verdict on ``pack``: a category they can prove, or ``unknown``."""
    if pack.signature == "hang":
        return _by_rule(pack, _HANG_RULE)
    if pack.signature in _KILLED:
        return _by_rule(pack, _KILLED_RULE)
    own = [quote for quote in _lines(pack, ("log", "state")) if is_error_line(quote.quote)]
    exception = next((q for q in own if _EXCEPTION_LINE.match(q.quote)), None)
    # The supervisor's events are context: a line of theirs (its own read of the state
    # database found it locked) does not outweigh an exception the workflow raised.
    events = [] if exception else list(_lines(pack, ("event",)))
    errors = own + [quote for quote in events if is_error_line(quote.quote)]
    for quote in errors:
        for rule in RULES:
            if rule.pattern.search(quote.quote):
                return _verdict(pack, rule.answer, _supporting(rule, quote, errors))
    exception = exception or next((q for q in errors if _EXCEPTION_LINE.match(q.quote)), None)
    config = _config_read(pack, exception) if exception is not None else None
    if exception is not None and config is not None:
        return _verdict(pack, _CONFIG, [config, exception])
    repeated = pack.failures_with_signature >= REPEATS_FOR_BUG and "@" in pack.signature
    if repeated and exception is not None:
        return _verdict(pack, _repeated(pack), [exception])
    return _verdict(pack, _UNKNOWN, errors[:1])


def _lines(pack: EvidencePack, kinds: tuple[str, ...]) -> Iterator[Quote]:
    """Every line of the items of those kinds: the log newest first, then the others."""
    if "log" in kinds:
        for item in reversed(pack.items):
            if item.kind == "log" and item.text.strip():
                yield Quote(evidence_id=item.id, quote=item.text.strip())
    for item in pack.items:
        if item.kind in kinds and item.kind != "log":
            for line in item.text.splitlines():
                if line.strip():
                    yield Quote(evidence_id=item.id, quote=line.strip())


def _supporting(rule: Rule, first: Quote, errors: list[Quote]) -> list[Quote]:
    """The line that matched, and up to two other lines the same rule matches (the
    most specific line of a chained traceback is often not the newest)."""
    quotes = [first]
    for quote in errors:
        if len(quotes) == MAX_QUOTES:
            break
        if rule.pattern.search(quote.quote) and all(quote.quote != q.quote for q in quotes):
            quotes.append(quote)
    return quotes


def _by_rule(pack: EvidencePack, rule: Rule) -> Verdict:
    """A verdict for how the process ended, quoting the line that shows it."""
    quote = next(
        (q for q in _lines(pack, ("log", "state", "event")) if rule.pattern.search(q.quote)), None
    )
    return _verdict(pack, rule.answer, [quote] if quote else [])


def _config_read(pack: EvidencePack, exception: Quote) -> Quote | None:
    """A code line of the failing traceback (as printed in it) that reads configuration,
    when the exception is one a bad or missing value raises."""
    match = _EXCEPTION_LINE.match(exception.quote)
    if match is None or match["type"] not in _BAD_VALUE:
        return None
    logs = [item for item in pack.items if item.kind == "log"]
    end = next(i for i, item in enumerate(logs) if item.id == exception.evidence_id)
    for item in reversed(logs[:end]):
        code = item.text.strip()
        if code.startswith("Traceback (most recent call last)"):
            return None
        if _CONFIG_READ.search(code) and not code.startswith("File "):
            return Quote(evidence_id=item.id, quote=code)
    return None


def _repeated(pack: EvidencePack) -> Answer:
    kind = pack.signature.split("@", 1)[0]
    return Answer(
        "bug",
        f"The same {kind} failed {pack.failures_with_signature} times at the same place: "
        "a deterministic bug in the workflow's code that restarts will not fix.",
        ("Look at the log and the source lines of the traceback", "Fix the code, then restart"),
        restart_helps=False,
    )


def _verdict(pack: EvidencePack, answer: Answer, quotes: list[Quote]) -> Verdict:
    return Verdict(
        workflow=pack.workflow,
        cause=answer.cause,
        category=answer.category,
        confidence=answer.confidence,
        evidence=tuple(quotes),
        next_steps=answer.next_steps,
        restart_helps=answer.restart_helps,
        source="rules",
    )
