"""How a tool call reads in the progress message, for every backend alike.

``describe("read", {"file_path": "src/api.py"})`` is ``📖 read api.py``. The
built-in backend names its tools in lower case (``read``, ``grep``), Claude
Code in title case (``Read``, ``Grep``); both land here so the phone shows the
same words whichever agent works. Texts are short: a progress line on a phone
has room for a few dozen characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from supervisor.agent.types import Step

SUBJECT_CLIP = 40

_ICONS = {
    "read": "📖",
    "grep": "🔎",
    "glob": "🗂",
    "ls": "🗂",
    "tail": "📜",
    "log_lines": "📜",
    "events": "🗓",
    "status": "📊",
    "why": "🩺",
    "edit": "✏️",
    "write": "📝",
    "multiedit": "✏️",
    "restart": "🔁",
    "pause": "⏸",
    "resume": "▶️",
    "webfetch": "🌐",
    "websearch": "🌐",
    "task": "🧩",
    "todowrite": "🗒",
}
_PATH_KEYS = ("file_path", "path", "notebook_path")
_WORD_KEYS = ("pattern", "query", "url", "description")


def describe(tool: str, arguments: Mapping[str, Any]) -> Step:
    """The progress step of calling ``tool`` with ``arguments``."""
    name = tool.lower()
    icon = _ICONS.get(name, "🔧")
    subject = _subject(name, arguments)
    return Step(icon, f"{name} {subject}".strip())


def _subject(name: str, arguments: Mapping[str, Any]) -> str:
    if name == "tail":
        lines = arguments.get("lines")
        pattern = arguments.get("pattern")
        return " ".join(str(part) for part in (lines, pattern) if part)
    for key in _WORD_KEYS:
        value = arguments.get(key)
        if isinstance(value, str) and value and name not in ("read", "edit", "write"):
            return _clip(value)
    for key in _PATH_KEYS:
        value = arguments.get(key)
        if isinstance(value, str) and value:
            return _clip(PurePath(value).name or value)
    return ""


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUBJECT_CLIP else text[: SUBJECT_CLIP - 1] + "…"
