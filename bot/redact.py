"""Keep secrets out of every log line.

Logs get pasted into issues and chats, and the libraries under the bot are
chatty about URLs: httpx logs every request at INFO with the full URL, and
Telegram's Bot API puts the bot token in the URL path
(``https://api.telegram.org/bot<TOKEN>/getUpdates``). So httpx is turned down
to WARNING, and a filter rewrites each record, message, arguments and
traceback, before any handler formats it: the configured secrets and anything
shaped like a key or token become ``[REDACTED]``, by the one rule for secrets
in ``supervisor.secrets`` (the same that keeps them out of a diagnosis).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from supervisor.secrets import REDACTED, Redactor

__all__ = ["REDACTED", "RedactingFilter", "install_redaction"]

# Library loggers (and their existing children) filtered at the source, so their
# records are clean even on handlers attached after install_redaction ran.
NOISY_LOGGERS = ("httpx", "telegram", "apscheduler")


class RedactingFilter(logging.Filter):
    """Render each record's message with its args, redact it, and clear the args."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.redact = Redactor(secrets).redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install_redaction(secrets: Iterable[str]) -> None:
    """Redact on every root handler and on the noisy library loggers.

    Call it after logging is configured; calling it again (with the same
    secrets) covers handlers added since, without stacking filters.
    """
    redactor = RedactingFilter(secrets)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    targets: list[logging.Filterer] = [*logging.getLogger().handlers]
    targets += _noisy_loggers()
    for target in targets:
        for old in [f for f in target.filters if isinstance(f, RedactingFilter)]:
            target.removeFilter(old)
        target.addFilter(redactor)


def _noisy_loggers() -> list[logging.Logger]:
    prefixes = tuple(f"{name}." for name in NOISY_LOGGERS)
    existing = [
        logger
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and name.startswith(prefixes)
    ]
    return [*(logging.getLogger(name) for name in NOISY_LOGGERS), *existing]
