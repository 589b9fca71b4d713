"""Isolation every test gets: no settings leak in from the developer's shell or `.env`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.knownsettings import PREFIXES

_ISOLATED_PREFIXES = (*PREFIXES, "ANTHROPIC_", "WORKFLOWS_", "DEMO_")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clear our settings from the environment and run from an empty directory.

    pydantic-settings reads `.env` from the working directory, so a test run
    from the repo root would otherwise pick up a developer's real token.
    """
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES) or name == "NOTIFY_SOCKET":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
