"""Operating pieces: systemd notify, the instance lock, log redaction, the unit file."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.lock import AlreadyRunning, InstanceLock, token_fingerprint
from bot.redact import REDACTED, RedactingFilter, install_redaction
from bot.systemd import SystemdNotifier

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "123456789:AAHfake-token_for-tests-0123456789abcdef"
SECRET_KEY = "sk-ant-api03-not-a-real-key_0123"


# --- systemd notify ---------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        yield sock, str(path)


def test_notifier_sends_each_message_as_a_datagram(
    receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = SystemdNotifier()
    assert notifier.enabled
    notifier.ready()
    notifier.watchdog()
    notifier.status("3 workflows\nall healthy")
    notifier.stopping()
    received = [sock.recv(4096).decode() for _ in range(4)]
    assert received == ["READY=1", "WATCHDOG=1", "STATUS=3 workflows all healthy", "STOPPING=1"]


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"acp-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"


def test_without_notify_socket_every_call_is_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier()
    assert not notifier.enabled
    notifier.ready()
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()
    assert notifier.watchdog_interval() is None
    assert caplog.records == []


def test_a_dead_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING, logger="bot.systemd"):
        for _ in range(3):
            notifier.ready()
            notifier.watchdog()
    assert len(caplog.records) == 1
    assert "cannot notify systemd" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_period_for_this_process(
    environ: dict[str, str], expected: float | None
) -> None:
    assert SystemdNotifier(environ).watchdog_interval() == expected


# --- instance lock ------------------------------------------------------------

_HOLD = """
import sys, time
from pathlib import Path
from bot.lock import InstanceLock
InstanceLock(Path(sys.argv[1]), sys.argv[2]).acquire()
print("locked", flush=True)
time.sleep(60)
"""

_CONTEND = """
import sys
from pathlib import Path
from bot.lock import AlreadyRunning, InstanceLock
try:
    InstanceLock(Path(sys.argv[1]), sys.argv[2]).acquire()
except AlreadyRunning as exc:
    print(exc)
    sys.exit(3)
"""


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_second_bot_is_refused_until_the_holder_is_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"
    holder = subprocess.Popen(
        _python(_HOLD, str(data_dir), TOKEN), stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"

        contender = subprocess.run(
            _python(_CONTEND, str(data_dir), "999:other"),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=10,
            check=False,
        )
        message = contender.stdout.strip()
        assert contender.returncode == 3, contender.stderr
        assert message.startswith("another bot is already running on this data dir")
        assert f"pid {holder.pid}" in message
        assert f"token …{token_fingerprint(TOKEN)}" in message
        assert message.endswith("stop it first or set SUPERVISOR_DATA_DIR")
        assert TOKEN not in message
        assert TOKEN.split(":")[1] not in message
        assert "\n" not in message

        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=5)
    finally:
        holder.kill()
        holder.wait()

    with InstanceLock(data_dir, "999:other") as lock:
        record = json.loads(lock.path.read_text())
        assert record["pid"] == os.getpid()
        assert record["token_fingerprint"] == token_fingerprint("999:other")
        assert record["started_at"]


def test_lock_is_exclusive_within_a_process_and_released_by_release(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path, TOKEN)
    first.acquire()
    with pytest.raises(AlreadyRunning, match=token_fingerprint(TOKEN)):
        InstanceLock(tmp_path, TOKEN).acquire()
    first.release()
    with InstanceLock(tmp_path, TOKEN):
        pass


# --- redaction ----------------------------------------------------------------


def _capturing_logger(name: str) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream, handler


def test_secrets_in_message_args_and_traceback_are_redacted() -> None:
    logger, stream, handler = _capturing_logger(f"acp.test.{uuid.uuid4().hex}")
    handler.addFilter(RedactingFilter(["hunter2-password", ""]))
    logger.info("POST https://api.telegram.org/bot%s/getUpdates pw=%s", TOKEN, "hunter2-password")
    logger.warning(f"inline {TOKEN} and {SECRET_KEY}")
    logger.info("mapping %(key)s", {"key": SECRET_KEY})
    try:
        raise RuntimeError(f"failed at /bot{TOKEN}/send")
    except RuntimeError:
        logger.exception("send failed")
    out = stream.getvalue()
    assert TOKEN not in out
    assert TOKEN.split(":")[1] not in out
    assert SECRET_KEY not in out
    assert "hunter2" not in out
    assert f"POST https://api.telegram.org/bot{REDACTED}/getUpdates pw={REDACTED}" in out
    assert f"inline {REDACTED} and {REDACTED}" in out
    assert f"RuntimeError: failed at /bot{REDACTED}/send" in out


def test_ordinary_text_is_left_alone() -> None:
    logger, stream, handler = _capturing_logger(f"acp.test.{uuid.uuid4().hex}")
    handler.addFilter(RedactingFilter(["s3cret"]))
    logger.info("workflow %s restarted at %s (%d%%)", "demo", "12:30:45", 50)
    assert stream.getvalue() == "INFO workflow demo restarted at 12:30:45 (50%)\n"


@pytest.fixture
def clean_logging() -> Iterator[None]:
    names = ["", "httpx", "telegram", "apscheduler", "telegram.ext.Updater"]
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).filters)) for n in names}
    root_handlers = list(logging.getLogger().handlers)
    yield
    root = logging.getLogger()
    for handler in root.handlers:
        for f in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(f)
    root.handlers[:] = root_handlers
    for name, (level, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.filters[:] = filters


@pytest.mark.usefixtures("clean_logging")
def test_install_redaction_covers_root_handlers_and_library_loggers() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    child = logging.getLogger("telegram.ext.Updater")
    child.setLevel(logging.INFO)

    install_redaction(["my-db-password"])
    install_redaction(["my-db-password"])  # idempotent: no stacked filters

    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    child.info("polling %s with %s", f"https://api.telegram.org/bot{TOKEN}", "my-db-password")
    logging.getLogger("httpx").warning("HTTP Request: GET /bot%s/getMe", TOKEN)
    out = stream.getvalue()
    assert TOKEN not in out
    assert "my-db-password" not in out
    assert out.count(REDACTED) == 3


# --- deployment files ---------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart exists, so point the install dir at a fake one.
    install = tmp_path / "opt"
    (install / ".venv" / "bin").mkdir(parents=True)
    (install / ".venv" / "bin" / "python").symlink_to(sys.executable)
    unit = (ROOT / "deploy" / "agent-control-plane.service").read_text()
    assert "/opt/agent-control-plane" in unit
    target = tmp_path / "agent-control-plane.service"
    target.write_text(unit.replace("/opt/agent-control-plane", str(install)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(target)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    names = [
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_CHAT_ID",
        "TELEGRAM_ALLOWED_CHAT_IDS",
        "TELEGRAM_ALLOWED_USER_IDS",
        "TELEGRAM_API_BASE_URL",
        "TELEGRAM_MESSAGE_THREAD_ID",
        "SUPERVISOR_CONFIG",
        "SUPERVISOR_DATA_DIR",
        "SUPERVISOR_DB_URL",
        "SUPERVISOR_CHECK_INTERVAL_SECONDS",
        "SUPERVISOR_STATUS_INTERVAL_SECONDS",
        "SUPERVISOR_STOP_GRACE_SECONDS",
        "SUPERVISOR_ERROR_POLL_SECONDS",
        "SUPERVISOR_HEALTHY_RESET_SECONDS",
        "SUPERVISOR_RELOAD_DEBOUNCE_SECONDS",
        "SUPERVISOR_LOG_MAX_BYTES",
        "SUPERVISOR_LOG_BACKUPS",
        "WORKFLOW_HEARTBEAT_SECONDS",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_MODEL",
    ]
    lines = text.splitlines()
    for name in names:
        index = next(i for i, line in enumerate(lines) if line.lstrip("# ").startswith(name + "="))
        assert lines[index - 1].startswith("# "), f"{name} has no comment"
