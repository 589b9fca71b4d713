"""Events as JSON and back: every field, for the control DB's log and ``run --json``.

The control DB keeps each event whole, so a consumer that was down (the bot,
killed between the supervisor recording an event and turning it into an
alert) can replay it exactly as it was published. pydantic validates the
stored form back into the frozen dataclass; ``kind`` picks the class.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from supervisor.events import EVENT_TYPES, Event

_ADAPTERS: dict[str, TypeAdapter[Any]] = {cls.kind: TypeAdapter(cls) for cls in EVENT_TYPES}


class UnreadableEvent(ValueError):
    """A stored event this release cannot read (unknown kind or fields)."""


def event_fields(event: Event) -> dict[str, Any]:
    """Every field of ``event`` as JSON-ready values, with ``kind`` and ``detail`` first."""
    fields = _ADAPTERS[event.kind].dump_python(event, mode="json")
    return {"kind": event.kind, "detail": event.detail, **fields}


def encode_event(event: Event) -> str:
    return json.dumps(event_fields(event), ensure_ascii=False, separators=(",", ":"))


def decode_event(payload: str) -> Event:
    """The event stored as ``payload``; raises ``UnreadableEvent`` if it cannot be."""
    try:
        fields = json.loads(payload)
        fields.pop("detail", None)  # derived from the other fields
        adapter = _ADAPTERS[fields.pop("kind")]
        event: Event = adapter.validate_python(fields)
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise UnreadableEvent(f"stored event cannot be read: {exc}") from exc
    return event
