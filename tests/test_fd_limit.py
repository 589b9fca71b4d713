"""The open-files limit: raised to the hard limit at start, a warning when it is too low."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from supervisor.fdlimit import (
    FDS_PER_WORKFLOW,
    NR_OPEN_DEFAULT,
    RESERVE_FDS,
    fd_need,
    plan_fd_limit,
)

pytestmark = pytest.mark.timeout(30)

INFINITY = resource.RLIM_INFINITY
ROOT = Path(__file__).resolve().parent.parent


def test_the_soft_limit_is_raised_to_the_hard_limit() -> None:
    assert plan_fd_limit(1024, 524288, 1000) == (524288, None)
    assert plan_fd_limit(20000, 20000, 10) == (20000, None)


def test_a_limit_too_low_for_the_workflows_is_warned_about_with_both_numbers() -> None:
    need = FDS_PER_WORKFLOW * 1000 + RESERVE_FDS
    assert fd_need(1000) == need
    soft, warning = plan_fd_limit(1024, 4096, 1000)
    assert soft == 4096  # raised as far as it goes all the same
    assert warning is not None
    assert "4096" in warning
    assert str(need) in warning
    assert "LimitNOFILE=65536" in warning
    assert "ulimit -Hn" in warning
    # Just enough is enough.
    assert plan_fd_limit(need, need, 1000) == (need, None)
    assert plan_fd_limit(need - 1, need - 1, 1000).warning is not None


def test_the_limit_is_never_lowered() -> None:
    # A soft limit above a (later lowered) hard one cannot exist, but one above the
    # kernel's ceiling under an unlimited hard limit can: it is kept.
    assert plan_fd_limit(2_000_000, INFINITY, 10, ceiling=NR_OPEN_DEFAULT) == (2_000_000, None)
    assert plan_fd_limit(INFINITY, INFINITY, 100_000) == (INFINITY, None)
    assert plan_fd_limit(4096, 4096, 0).soft == 4096


def test_an_unlimited_hard_limit_raises_to_what_the_kernel_allows() -> None:
    assert plan_fd_limit(1024, INFINITY, 1000) == (NR_OPEN_DEFAULT, None)
    assert plan_fd_limit(256, INFINITY, 10, ceiling=10240) == (10240, None)
    soft, warning = plan_fd_limit(256, INFINITY, 2000, ceiling=10240)
    assert soft == 10240
    assert warning is not None
    assert str(fd_need(2000)) in warning


def _limited(soft: int, hard: int | None = None) -> Callable[[], None]:
    def apply() -> None:
        _, now_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, now_hard if hard is None else hard))

    return apply


def _hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != INFINITY and hard < 1024:
        pytest.skip(f"the hard limit here ({hard}) leaves no room to lower the soft one")
    return hard


def test_the_headless_supervisor_raises_its_soft_limit_at_start_and_says_so(
    tmp_path: Path,
) -> None:
    hard = _hard_limit()
    config = tmp_path / "supervisor.toml"
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    config.write_text(
        f'[[workflows]]\nname = "one"\ncommand = {json.dumps(sleeper)}\nrestart = "never"\n',
        encoding="utf-8",
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")},
        "SUPERVISOR_CONFIG": str(config),
        "SUPERVISOR_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limited(256),  # noqa: PLW1509 (setrlimit only)
    )
    try:
        assert proc.stderr is not None
        line = ""
        deadline = time.monotonic() + 20
        while "open-files limit" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "the supervisor exited before saying it"
        soft_now, hard_now = psutil.Process(proc.pid).rlimit(psutil.RLIMIT_NOFILE)
        assert proc.stdout is not None
        while '"started"' not in proc.stdout.readline():  # up: SIGTERM is a clean stop now
            assert proc.poll() is None, "the supervisor exited before starting its workflow"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
    assert proc.returncode == 0, rest
    assert hard_now == hard
    expected = (
        hard if hard != INFINITY else int(Path("/proc/sys/fs/nr_open").read_text(encoding="ascii"))
    )
    assert soft_now == expected
    assert f"open-files limit raised from 256 to {expected}" in line
    assert "is below the" not in line + rest  # no warning: the limit suffices


def test_a_hard_limit_too_low_is_logged_naming_both_numbers_and_the_remedy() -> None:
    _hard_limit()
    program = (
        "import logging, resource, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr,"
        " format='%(levelname)s %(message)s')\n"
        "from supervisor.fdlimit import raise_fd_limit\n"
        "raise_fd_limit(1000)\n"
        "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        preexec_fn=_limited(256, 512),  # setrlimit only, before exec
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["512", "512"]
    info, warning = done.stderr.strip().splitlines()
    assert info.startswith("INFO open-files limit raised from 256 to 512, the hard limit")
    assert warning.startswith("WARNING open-files limit 512 is below the")
    assert str(fd_need(1000)) in warning
    assert "LimitNOFILE=" in warning
    assert "ulimit -Hn" in warning
