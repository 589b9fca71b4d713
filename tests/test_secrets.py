"""One rule for secrets: every key or token shape is redacted; secret files are never read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from supervisor.secrets import REDACTED, Redactor, readable, secret_values

SHAPED = [
    "7012345678:AAHfake-token_for-tests-0123456789abcdef",  # Telegram
    "sk-ant-api03-not-a-real-key_0123",
    "sk-proj-abcdefghijklmnop0123",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_0123456789abcdefghijABCDEFGHIJ012345",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
    "xoxb-123456789012-abcdefghijkl",
    "Zq8vR2pLm9KdT4wZ8nB1cF6hJ3sY5uE0aGq7",  # a long random-looking run
]


@pytest.mark.parametrize("secret", SHAPED)
def test_anything_shaped_like_a_key_or_token_is_redacted(secret: str) -> None:
    assert Redactor().redact(f"calling with {secret} now") == f"calling with {REDACTED} now"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi_123", f"Authorization: Bearer {REDACTED}"),
        ("password=hunter2 user=bob", f"password={REDACTED} user=bob"),
        ('{"api_key": "k-123456"}', f'{{"api_key": "{REDACTED}"}}'),
        ("export GITHUB_TOKEN=abc123", f"export GITHUB_TOKEN={REDACTED}"),
        ("secret: swordfish", f"secret: {REDACTED}"),
        ("postgresql://app:pa55word@db:5432/acp", f"postgresql://app:{REDACTED}@db:5432/acp"),
    ],
)
def test_values_assigned_to_secret_names_are_redacted_and_the_names_kept(
    text: str, expected: str
) -> None:
    assert Redactor().redact(text) == expected


def test_a_pem_block_is_redacted_whole() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
    assert Redactor().redact(f"key:\n{pem}\ndone") == f"key:\n{REDACTED}\ndone"


def test_given_literals_are_redacted_wherever_they_appear() -> None:
    redactor = Redactor(["db-pass-42"]).including(["s3cr3t-value"])
    text = "connect db-pass-42 with xs3cr3t-valuex"
    assert redactor.redact(text) == f"connect {REDACTED} with x{REDACTED}x"


def test_ordinary_evidence_is_left_alone() -> None:
    text = (
        "2026-11-26 12:30:45,123 ERROR workflows.workflow: run failed: KeyError: 'price' "
        "commit 3f9c2a7e1b0d4c5f6a7b8c9d0e1f2a3b4c5d6e7f uuid 0b7c1e9a-1d2e-4f3a-8b9c-0d1e2f3a4b5c "
        "/srv/acp/.venv/lib/python3.12/site-packages/anthropic/_base_client.py input_tokens=812 "
        "test_secrets_in_message_args_and_traceback_are_redacted (50%) on 1 of 3"
    )
    assert Redactor(["1", "on", ""]).redact(text) == text


def test_secret_values_are_read_from_settings() -> None:
    class Settings(BaseModel):
        token: SecretStr | None = None
        ping_url: SecretStr = SecretStr("https://hc-ping.com/uuid")
        name: str = "not a secret"

    assert secret_values(Settings(token=SecretStr("t0ken-value"))) == [
        "t0ken-value",
        "https://hc-ping.com/uuid",
    ]


@pytest.mark.parametrize(
    "name",
    [
        ".env",
        ".env.local",
        "server.pem",
        "id_rsa",
        "id_ed25519.pub",
        "my_secrets.toml",
        "Tokens.json",
        "api.KEY",
        "keyboard.py",
    ],  # keyboard.py: the rule, taken literally
)
def test_deny_listed_files_are_never_readable(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("x")
    assert not readable(path)
    assert not readable(path, root=tmp_path)


def test_ordinary_files_inside_the_root_are_readable(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "job.py").write_text("x")
    assert readable(tmp_path / "src" / "job.py", root=tmp_path)
    assert readable(tmp_path / "README.md")


def test_a_secret_directory_a_symlink_to_a_secret_and_a_path_outside_are_refused(
    tmp_path: Path,
) -> None:
    root = tmp_path / "project"
    (root / "secrets").mkdir(parents=True)
    (root / "secrets" / "db.txt").write_text("x")
    (root / ".env").write_text("KEY=1")
    os.symlink(root / ".env", root / "notes.txt")
    (tmp_path / "outside.py").write_text("x")
    assert not readable(root / "secrets" / "db.txt", root=root)
    assert not readable(root / "notes.txt", root=root)
    assert not readable(root / ".." / "outside.py", root=root)
