"""One rule for secrets: what is blanked out of any text, and which files are never read.

Diagnosis, heal, the agent bridge and the bot's own logs all send or keep
text that may hold a secret, so the rule lives here once. A ``Redactor``
replaces two things with ``[REDACTED]``: the literal values it was given
(the bot token, the API key, a workflow's ``env`` values, the settings that
are ``SecretStr``) and anything shaped like a key or token, known or not.

What it does not promise: a secret that matches no shape and was never
handed over as a literal (a password typed into a log by the workflow, say)
gets through; and a literal shorter than ``MIN_LITERAL`` characters is left
alone, because blanking every ``1`` or ``on`` would destroy the evidence
while hiding nothing worth the name. Bare hex strings are left alone too:
commit ids and digests are evidence, and a hex secret is caught when it is
assigned to a secret-looking name.

``readable`` is the deny-list for files: ``.env*``, ``*.pem``, ``id_*`` and
any name containing ``secret``, ``token`` or ``key`` (case-insensitive, as the
issue says it, so ``keyboard.py`` and ``tokenizer.py`` are refused too: a
false refusal costs a diagnosis a file, a false read may leak a key).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, SecretBytes, SecretStr

REDACTED = "[REDACTED]"
MIN_LITERAL = 4
_MIN_ENTROPY = 4.2  # bits per character: random base64 is ~4.5+, words and identifiers ~3.5

# Shapes redacted whole.
TOKEN_PATTERNS: tuple[str, ...] = (
    r"-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|\Z)",  # PEM blocks
    r"\d{6,12}:[A-Za-z0-9_-]{30,}",  # Telegram bot token
    r"sk-ant-[A-Za-z0-9_-]+",  # Anthropic
    r"\bsk-[A-Za-z0-9_-]{16,}",  # OpenAI and the like
    r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",  # AWS access key id
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
)
# Shapes whose first group (a name, a scheme) stays and whose rest is redacted.
_KEEP_PREFIX: tuple[str, ...] = (
    r"(\bBearer\s+)[A-Za-z0-9._~+/=-]{8,}",
    r"(://[^/\s:@]+:)[^@\s/]+(?=@)",  # the password in user:password@host
    r"(?i)(\b[A-Za-z0-9_]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key"
    r"|private[_-]?key)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]+",
)
_CANDIDATE = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")
_DENIED_NAME = re.compile(r"^\.env|\.pem$|^id_|secret|token|key", re.IGNORECASE)


class Redactor:
    """Replaces every given literal and every secret-shaped string with ``[REDACTED]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = frozenset(s for s in secrets if len(s) >= MIN_LITERAL)
        literal = sorted(self.secrets, key=len, reverse=True)
        self._whole = re.compile("|".join([*map(re.escape, literal), *TOKEN_PATTERNS]))
        self._prefixed = [re.compile(pattern) for pattern in _KEEP_PREFIX]

    def including(self, secrets: Iterable[str]) -> Redactor:
        """A redactor that also knows ``secrets`` (a workflow's ``env`` values, say)."""
        return Redactor([*self.secrets, *secrets])

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``[REDACTED]``."""
        text = self._whole.sub(REDACTED, text)
        for pattern in self._prefixed:
            text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
        return _CANDIDATE.sub(_random_looking, text)


def _random_looking(match: re.Match[str]) -> str:
    """Redact a long run only when it looks random: mixed case and digits, high entropy."""
    run = match.group(0)
    kinds = (str.isupper, str.islower, str.isdigit)
    if not all(any(test(c) for c in run) for test in kinds):
        return run
    counts = Counter(run)
    entropy = -sum(n / len(run) * math.log2(n / len(run)) for n in counts.values())
    return REDACTED if entropy >= _MIN_ENTROPY else run


def secret_values(*settings: BaseModel) -> list[str]:
    """The values of every ``SecretStr``/``SecretBytes`` field of the given settings."""
    found: list[str] = []
    for model in settings:
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, SecretBytes):
                found.append(value.get_secret_value().decode("utf-8", errors="replace"))
    return [value for value in found if value]


def readable(path: Path, *, root: Path | None = None) -> bool:
    """Whether a tool or an evidence builder may read ``path``.

    Refused: a deny-listed name (of the path as given, or of the file a
    symlink points to), and with ``root``, a path outside ``root`` or with a
    deny-listed directory between ``root`` and the file (``secrets/db.txt``).
    """
    resolved = path.resolve()
    names = {path.name, resolved.name}
    if root is not None:
        base = root.resolve()
        if not resolved.is_relative_to(base):
            return False
        names.update(resolved.relative_to(base).parts)
    return not any(_DENIED_NAME.search(name) for name in names)
