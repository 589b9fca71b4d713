"""How many file descriptors the supervisor holds per workflow while nothing changes.

Starts the headless supervisor (``python -m supervisor run --json``) three
times over one directory: with no workflow (the baseline), with ``N`` running
workflows of a tiny child that heartbeats its state table (WAL, as the
``workflows`` library writes it), and with the same ``N`` configured but not
started (``autostart = false``). In each it waits until the workflows are up
and read, then counts the supervisor process's open descriptors (psutil
``num_fds``) and sorts them by what they point at. The per-workflow figure is
what ``supervisor.fdlimit.FDS_HELD_PER_WORKFLOW`` states. Asserts nothing.

    python bench/fd_budget.py [--workflows 200] [--settle 4] [--soft 1024] [--hard 4096]

``--soft`` / ``--hard`` start the supervisor with a lower open-files limit,
to see it raised (or warned about) in its log.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil

from workflows import contract

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import importlib.util, os, sqlite3, sys, time
# contract.py alone (not the whole ``workflows`` package): 200 of these start at once.
spec = importlib.util.spec_from_file_location("contract", sys.argv[1])
contract = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contract)
db = sqlite3.connect(os.environ["WORKFLOW_DB"], timeout=5, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute(contract.STATE_TABLE_DDL)
put = lambda key, value: db.execute(contract.UPSERT_STATE_SQL, (key, value))
put(contract.STATUS_KEY, "running")
every = float(sys.argv[2])
while True:
    put(contract.HEARTBEAT_KEY, contract.format_timestamp())
    time.sleep(every)
"""


def write_config(root: Path, count: int, *, autostart: bool, beat: float) -> Path:
    child = root / "child.py"
    child.write_text(CHILD, encoding="utf-8")
    tables = []
    for index in range(count):
        fields = {
            "name": f"w{index}",
            "command": [sys.executable, "-I", str(child), contract.__file__, str(beat)],
            "db": f"state/w{index}.db",
            "restart": "never",
            "autostart": autostart,
        }
        tables.append(
            "[[workflows]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items())
        )
    (root / "state").mkdir(exist_ok=True)
    config = root / "supervisor.toml"
    config.write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    return config


def kind_of(target: str, root: Path) -> str:
    """What one descriptor points at, in the words of the budget."""
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("socket:"):
        return "socket"
    if target.startswith("anon_inode:"):
        return target.removeprefix("anon_inode:").strip("[]")
    if target.startswith(str(root / "state")):
        for suffix in ("-wal", "-shm", "-journal"):
            if target.endswith(suffix):
                return f"state db {suffix}"
        return "state db"
    if target.endswith(".log") or ".log." in target:
        return "workflow log"
    if target.startswith(str(root / "data")):
        return "data dir (control DB, ...)"
    if target.startswith("/dev/"):
        return "device"
    return "other file"


def descriptors(pid: int, root: Path) -> Counter[str]:
    kinds: Counter[str] = Counter()
    fd_dir = Path(f"/proc/{pid}/fd")
    if not fd_dir.is_dir():  # not Linux: the total only
        return kinds
    for entry in fd_dir.iterdir():
        try:
            kinds[kind_of(os.readlink(entry), root)] += 1
        except OSError:
            continue  # closed while we looked
    return kinds


def limits(soft: int | None, hard: int | None) -> Callable[[], None] | None:
    if soft is None and hard is None:
        return None

    def apply() -> None:
        now_soft, now_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        new_hard = now_hard if hard is None else hard
        new_soft = min(now_soft if soft is None else soft, new_hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))

    return apply


def measure(
    root: Path, count: int, *, autostart: bool, args: argparse.Namespace
) -> tuple[int, Counter[str], list[str]]:
    """Open descriptors of a steady supervisor over ``count`` workflows, and its log lines."""
    config = write_config(root, count, autostart=autostart, beat=args.beat)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")},
        "SUPERVISOR_CONFIG": str(config),
        "SUPERVISOR_DATA_DIR": str(root / "data"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "run", "--json"],
        cwd=root,  # no .env of the developer's is read
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limits(args.soft, args.hard),  # noqa: PLW1509 (only setrlimit, no threads yet)
    )
    events: queue.Queue[dict[str, object]] = queue.Queue()
    log: list[str] = []

    def read_events() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            events.put(json.loads(line))

    def read_log() -> None:
        assert proc.stderr is not None
        log.extend(line.rstrip("\n") for line in proc.stderr)

    threading.Thread(target=read_events, daemon=True).start()
    threading.Thread(target=read_log, daemon=True).start()
    try:
        started = 0
        wanted = count if autostart else 0
        deadline = time.monotonic() + 60 + count * 0.5
        while started < wanted:
            if proc.poll() is not None:
                raise RuntimeError("supervisor exited:\n" + "\n".join(log[-20:]))
            try:
                event = events.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"only {started}/{wanted} workflows started") from None
            started += event.get("kind") == "started"
        time.sleep(args.settle)  # every table heartbeated and was read (0.5 s polls)
        process = psutil.Process(proc.pid)
        samples = []
        for _ in range(5):
            samples.append(process.num_fds())
            time.sleep(0.5)
        kinds = descriptors(proc.pid, root)
        if max(samples) != min(samples):
            kinds["(unsteady: samples " + ",".join(map(str, samples)) + ")"] = 0
        return samples[-1], kinds, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30 + count * 0.2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def show(label: str, total: int, kinds: Counter[str]) -> None:
    parts = ", ".join(f"{kind} {n}" for kind, n in kinds.most_common())
    print(f"{label:<34} {total:>6} fds   ({parts})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=200, help="how many (default 200)")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds after all started")
    parser.add_argument("--beat", type=float, default=1.0, help="child heartbeat period")
    parser.add_argument("--soft", type=int, help="start the supervisor with this soft limit")
    parser.add_argument("--hard", type=int, help="... and this hard limit")
    args = parser.parse_args()
    count = args.workflows
    with tempfile.TemporaryDirectory(prefix="fd-budget-") as tmp:
        root = Path(tmp)
        before, base_kinds, _ = measure(root, 0, autostart=True, args=args)
        after, run_kinds, run_log = measure(root, count, autostart=True, args=args)
        idle, idle_kinds, _ = measure(root, count, autostart=False, args=args)
    print(f"supervisor open descriptors, {count} workflows (psutil num_fds, steady):")
    show("before: no workflow", before, base_kinds)
    show(f"after: {count} running", after, run_kinds)
    show(f"{count} configured, not started", idle, idle_kinds)
    print(f"per running workflow: {(after - before) / count:.2f} fds")
    print(f"per stopped workflow: {(idle - before) / count:.2f} fds")
    held = run_kinds - base_kinds
    print(
        "held per running workflow, by kind: "
        + ", ".join(f"{kind} {n / count:.2f}" for kind, n in held.most_common())
    )
    for line in run_log:
        if "open-files limit" in line:
            print("supervisor log:", line)


if __name__ == "__main__":
    main()
