"""``python -m workflows new``: start a workflow file from a bundled example."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from workflows.contract import NAME_PATTERN
from workflows.errors import WorkflowError

TEMPLATES = {
    "demo": "demo.py",
    "api-builder": "api_builder.py",
    "refactor": "refactor.py",
    "feature": "feature.py",
}
_NAME = re.compile(NAME_PATTERN)
_DECLARATION = re.compile(r'Workflow\("[^"]+"\)')


def example_path(template: str) -> Path:
    """The bundled file of a template, e.g. ``example_path("demo")``."""
    if template not in TEMPLATES:
        raise WorkflowError(f"unknown template {template!r}; choose one of: {', '.join(TEMPLATES)}")
    return Path(str(files("workflows") / "examples" / TEMPLATES[template]))


def write_from_template(name: str, template: str, target: Path | None = None) -> Path:
    """Copy a template to ``target`` (default ``<name>.py``) with the workflow renamed."""
    if not _NAME.match(name):
        raise WorkflowError(
            f"bad workflow name {name!r}: use letters, digits, '-', '_' or '.', up to 48"
        )
    source = example_path(template).read_text()
    destination = target or Path(f"{name.replace('-', '_')}.py")
    if destination.exists():
        raise WorkflowError(f"{destination} already exists; not overwriting it")
    destination.write_text(_DECLARATION.sub(f'Workflow("{name}")', source, count=1))
    return destination
