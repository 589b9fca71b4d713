"""The open-files limit (``RLIMIT_NOFILE``): raised to the hard limit at start, checked
against the configured workflows.

The supervisor keeps a few descriptors open for every workflow (below), and
systemd and most shells start a process with a soft limit of 1024: about two
hundred workflows use it up, and then a spawn, a log rotation or a state read
fails with "Too many open files". Any process may raise its soft limit up to
its hard limit, so the supervisor does at start; only the hard limit needs an
administrator, and when even that is too low for the workflows configured the
warning says which number to set where.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("supervisor")

# Held in the supervisor by each running workflow while nothing changes, as
# measured by bench/fd_budget.py (5.00 per workflow over 200 workflows):
#   1  its log file, which LogWriter keeps open for appending (also while stopped);
#   1  the read end of its output pipe (stdout and stderr, pumped into the log);
#   3  its state database, read through StateReader's kept read-only connection:
#      the .db file and, in WAL mode (the workflows library's), its -wal and -shm
#      (also while stopped, once the database exists).
FDS_HELD_PER_WORKFLOW = 5
# The budget adds room for what a workflow opens for a moment: at a (re)start the
# go-ahead pipe and subprocess's exec-error pipe (2 each, closed once it runs) and
# its pid file; a /tail, /logs or /why reading its log; a pause writing its state.
FDS_PER_WORKFLOW = FDS_HELD_PER_WORKFLOW + 3
# The process's own, whatever the number of workflows: stdio, the event loop, the
# control DB's connections (with WAL and shm); the bot's HTTP connections to Telegram
# and Claude, the metrics server, agent-bridge and heal subprocesses. The headless
# supervisor measures 9 with no workflow; the rest is headroom.
RESERVE_FDS = 256
# Linux refuses a soft limit above fs.nr_open (default 2**20), even when the hard
# limit is unlimited; macOS refuses one above OPEN_MAX (10240).
NR_OPEN_DEFAULT = 1 << 20
OPEN_MAX_ELSEWHERE = 10240
SUGGESTED_LIMIT = 65536  # what deploy/agent-control-plane.service sets


class FdPlan(NamedTuple):
    """The soft limit to set (the current one when there is nothing to raise), and a
    warning when even that is below what the workflows need."""

    soft: int
    warning: str | None


def fd_need(workflows: int) -> int:
    """Descriptors ``workflows`` workflows may need at once, the supervisor's own included."""
    return FDS_PER_WORKFLOW * workflows + RESERVE_FDS


def plan_fd_limit(
    soft: int, hard: int, workflows: int, *, ceiling: int = NR_OPEN_DEFAULT
) -> FdPlan:
    """The soft limit raised to ``hard`` (never lowered), and whether it is enough.

    An unlimited hard limit (``RLIM_INFINITY``) raises the soft one to
    ``ceiling``, the most the kernel accepts.
    """
    unlimited = resource.RLIM_INFINITY
    target = ceiling if hard == unlimited else hard
    new_soft = soft if soft == unlimited else max(soft, target)
    need = fd_need(workflows)
    if new_soft == unlimited or new_soft >= need:
        return FdPlan(new_soft, None)
    suggested = max(SUGGESTED_LIMIT, 1 << (need - 1).bit_length())
    warning = (
        f"open-files limit {new_soft} is below the {need} that {workflows} workflows need "
        f"({FDS_PER_WORKFLOW} each + {RESERVE_FDS}): past it starts, logs and state reads "
        f"fail with 'Too many open files'; raise the hard limit: LimitNOFILE={suggested} "
        f"in the systemd unit, or `ulimit -Hn {suggested}` (as root) in the shell that "
        "starts it"
    )
    return FdPlan(new_soft, warning)


def _ceiling() -> int:
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return OPEN_MAX_ELSEWHERE if not Path("/proc").is_dir() else NR_OPEN_DEFAULT


def _shown(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


def raise_fd_limit(workflows: int) -> FdPlan:
    """Raise this process's soft open-files limit to the hard limit; log one line saying
    from what to what, and a warning when it is too low for ``workflows`` workflows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    plan = plan_fd_limit(soft, hard, workflows, ceiling=_ceiling())
    need = fd_need(workflows)
    if plan.soft == soft:
        log.info(
            "open-files limit %s (hard limit %s): nothing to raise (%d workflows need %d)",
            _shown(soft),
            _shown(hard),
            workflows,
            need,
        )
    else:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (plan.soft, hard))
        except (ValueError, OSError) as exc:
            log.warning(
                "open-files limit %s kept: raising it to %s failed: %s", soft, plan.soft, exc
            )
            plan = plan_fd_limit(soft, soft, workflows)  # what there is, judged as it is
        else:
            log.info(
                "open-files limit raised from %s to %s, %s (%d workflows need %d)",
                _shown(soft),
                _shown(plan.soft),
                "the hard limit" if plan.soft == hard else "the most the kernel allows",
                workflows,
                need,
            )
    if plan.warning is not None:
        log.warning("%s", plan.warning)
    return plan
