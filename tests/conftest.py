"""Isolation every test gets: no settings leak in from the developer's shell or `.env`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

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


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A database of the test's own on the server ``TEST_POSTGRES_URL`` names, dropped after.

    Skips without the variable (a machine with no Postgres); ``.ci/run`` sets
    it to the local server, so CI runs these tests.
    """
    base = os.environ.get("TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set TEST_POSTGRES_URL to run against Postgres")
    server = make_url(base)
    name = f"acp_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def control_db_url(request: pytest.FixtureRequest) -> str | None:
    """The control DB on each backend: None (SQLite in the data dir), then a Postgres database."""
    if request.param == "sqlite":
        return None
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres
