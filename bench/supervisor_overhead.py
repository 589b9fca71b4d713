"""What supervising costs: our supervisor's own CPU beside supervisord 4's, same 100 processes.

The goal: with 100 workflows heartbeating every second, the supervisor's CPU
is at most that of supervisord 4 supervising the same 100 processes.
supervisord only waits on its children and copies their output to log files,
reading no heartbeats at all; ours also watches every workflow's state DB
(100 SQLite files, with inotify) and reads each write within milliseconds,
besides waiting on them, logging their output and judging their hangs.

Both supervise the same child: a small Python script that keeps the state
contract (``workflows/contract.py``) and prints nothing. It heartbeats every
second the way the workflow library does: by touching the file the supervisor
names in ``WORKFLOW_HEARTBEAT_FILE``, which ours looks at only when it judges
a hang, and in its state table where none is named (under supervisord). Ours
is measured twice: so, and with every beat written to the table instead (as a
workflow that keeps the table itself may do), each one a write it reads. Ours
runs headless (``python -m supervisor run``) over a generated
``supervisor.toml`` with its production settings; supervisord runs from a
temporary venv that ``pip install 'supervisor>=4,<5'`` fills, over a generated
``supervisord.conf`` (``nodaemon``, logs in the temporary directory). The three
runs come one after the other, never at once. For each, once every child has
written a heartbeat and a warm-up has passed, the supervisor process's own CPU
time (its threads' ``schedstat`` on Linux, to the nanosecond; not its children's)
is measured over the same wall-clock window. Prints the figures side by side;
asserts nothing. Every process it started is ended, process group by process
group, even on Ctrl-C or an error.

    python bench/supervisor_overhead.py [--workflows 100] [--seconds 60] [--warmup 10]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import psutil

from workflows import contract

REPO = Path(__file__).resolve().parents[1]
SUPERVISORD_REQUIREMENT = "supervisor>=4,<5"
HEARTBEAT_SECONDS = 1.0
READY_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 20.0
FRESH_SECONDS = 3.0  # a heartbeat younger than this at the window's end counts as beating
# Names our programs read: none may leak in from the caller's environment into either run.
OUR_PREFIXES = ("SUPERVISOR_", "WORKFLOW_", "TELEGRAM_", "ALERT_", "HEALTHCHECK_", "AGENT_")

# argv[1] is contract.py, loaded by path: the ``workflows`` package would slow start-up.
WORKER = r"""
import importlib.util, os, random, sqlite3, sys, time
spec = importlib.util.spec_from_file_location("contract", sys.argv[1])
contract = importlib.util.module_from_spec(spec)
spec.loader.exec_module(contract)
db = sqlite3.connect(os.environ["WORKFLOW_DB"], timeout=5, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute(contract.STATE_TABLE_DDL)
put = lambda key, value: db.execute(contract.UPSERT_STATE_SQL, (key, value))
put(contract.STATUS_KEY, "running")
named = None if os.environ.get("BENCH_TABLE_BEATS") else os.environ.get(contract.HEARTBEAT_FILE_ENV)
time.sleep(random.uniform(0, EVERY))  # spread the beats over the second
while True:
    try:
        if named:
            with open(named, "a"):
                os.utime(named)
        else:
            put(contract.HEARTBEAT_KEY, contract.format_timestamp())
    except sqlite3.OperationalError:
        pass  # busy for 5 s: the next beat will do
    time.sleep(EVERY)
"""


@dataclass(frozen=True)
class Result:
    """One supervisor's figures over the window."""

    label: str
    workflows: int
    seconds: float
    cpu_seconds: float
    alive: int
    beating: int
    load: float

    @property
    def percent(self) -> float:
        return 100 * self.cpu_seconds / self.seconds


@dataclass(frozen=True)
class Setup:
    """Where one side's files are and what its children run."""

    root: Path
    worker: Path
    dbs: list[Path]
    beats: Path | None = None  # where ours names the heartbeat files

    def heartbeat(self, db: Path) -> datetime | None:
        """The workflow's last heartbeat: its table's, or its file's if later."""
        beat = heartbeat(db)
        if self.beats is None:
            return beat
        touched = self.beats / db.stem
        if not touched.exists():
            return beat
        filed = datetime.fromtimestamp(touched.stat().st_mtime, UTC)
        return filed if beat is None else max(beat, filed)

    @property
    def names(self) -> list[str]:
        return [db.stem for db in self.dbs]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without our settings' names nor a venv of its own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(OUR_PREFIXES) and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    return {**env, **extra}


def prepare(root: Path, count: int) -> Setup:
    """The worker script and the state DB paths of ``count`` workflows under ``root``."""
    root.mkdir(parents=True)
    worker = root / "worker.py"
    worker.write_text(WORKER.replace("EVERY", repr(HEARTBEAT_SECONDS)).lstrip(), encoding="utf-8")
    (root / "state").mkdir()
    return Setup(root, worker, [root / "state" / f"w{index}.db" for index in range(count)])


def worker_argv(setup: Setup) -> list[str]:
    return [sys.executable, str(setup.worker), str(Path(contract.__file__).resolve())]


def write_supervisor_toml(setup: Setup) -> Path:
    """Our ``supervisor.toml``: one ``command`` workflow per DB, everything else default."""
    argv = worker_argv(setup)
    tables = [
        f"[[workflows]]\nname = {_toml(name)}\ncommand = [{', '.join(map(_toml, argv))}]\n"
        f"db = {_toml(str(db))}\n"
        for name, db in zip(setup.names, setup.dbs, strict=True)
    ]
    path = setup.root / "supervisor.toml"
    path.write_text("\n".join(tables), encoding="utf-8")
    return path


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's for these characters)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_supervisord_conf(setup: Setup) -> Path:
    """A ``supervisord.conf`` with the same programs, in the foreground, logs under root."""

    def value(text: str) -> str:
        return text.replace("%", "%%")  # supervisord expands %(name)s in every value

    logs = setup.root / "logs"
    logs.mkdir()
    lines = [
        "[supervisord]",
        "nodaemon=true",
        f"logfile={value(str(setup.root / 'supervisord.log'))}",
        f"pidfile={value(str(setup.root / 'supervisord.pid'))}",
        f"childlogdir={value(str(logs))}",
        "loglevel=info",
        "",
    ]
    command = value(shlex.join(worker_argv(setup)))
    for name, db in zip(setup.names, setup.dbs, strict=True):
        quoted = str(db).replace("\\", "\\\\").replace('"', '\\"')
        lines += [
            f"[program:{name}]",
            f"command={command}",
            f"directory={value(str(setup.root))}",
            f'environment=WORKFLOW_DB="{value(quoted)}",WORKFLOW_NAME="{name}"',
            "autostart=true",
            "autorestart=unexpected",
            "startsecs=1",
            "stopsignal=TERM",
            "stopwaitsecs=10",
            "redirect_stderr=true",
            f"stdout_logfile={value(str(logs / f'{name}.log'))}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=3",
            "",
        ]
    path = setup.root / "supervisord.conf"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def install_supervisord(directory: Path) -> tuple[Path, str]:
    """A fresh venv holding supervisord 4: its executable and the installed version."""
    print(f"installing {SUPERVISORD_REQUIREMENT!r} into a temporary venv ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True, env=clean_env())
    python = directory / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", SUPERVISORD_REQUIREMENT],
        check=False,
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    if pip.returncode != 0:  # its output only then: the index prints warnings on success too
        sys.stderr.write(pip.stdout + pip.stderr)
        raise RuntimeError(f"pip install {SUPERVISORD_REQUIREMENT!r} failed ({pip.returncode})")
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('supervisor'))"],
        check=True,
        capture_output=True,
        text=True,
        env=clean_env(),
    ).stdout.strip()
    return directory / "bin" / "supervisord", version


def heartbeat(db: Path) -> datetime | None:
    """The heartbeat in ``db``, or None when there is none (yet) or it cannot be read."""
    if not db.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as c:
            row = c.execute(
                "SELECT value FROM state WHERE key = ?", (contract.HEARTBEAT_KEY,)
            ).fetchone()
    except sqlite3.Error:
        return None
    return contract.parse_timestamp(row[0]) if row else None


def beating(setup: Setup) -> int:
    """How many workflows have heartbeated in the last ``FRESH_SECONDS``."""
    now = datetime.now(UTC)
    beats = [setup.heartbeat(db) for db in setup.dbs]
    return sum(1 for b in beats if b is not None and (now - b).total_seconds() < FRESH_SECONDS)


def workers(setup: Setup) -> list[psutil.Process]:
    """Every live process running this side's worker script (its path is unique to the run)."""
    marker = str(setup.worker)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(marker in part for part in cmdline):
            found.append(proc)
    return found


def wait_ready(proc: subprocess.Popen[bytes], setup: Setup, label: str) -> float:
    """Seconds until every workflow has written a heartbeat; raises if it never happens."""
    started = time.monotonic()
    pending = list(setup.dbs)
    while pending:
        if proc.poll() is not None:
            raise RuntimeError(f"{label} exited with {proc.returncode} before its children ran")
        if time.monotonic() - started > READY_TIMEOUT_SECONDS:
            raise RuntimeError(
                f"{label}: {len(pending)} of {len(setup.dbs)} workflows never heartbeated "
                f"within {READY_TIMEOUT_SECONDS:g}s (see {setup.root})"
            )
        pending = [db for db in pending if setup.heartbeat(db) is None]
        time.sleep(0.5)
    return time.monotonic() - started


@contextlib.contextmanager
def running(
    argv: list[str], setup: Setup, env: Mapping[str, str], label: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A supervisor in its own session, output to files; stopped and swept on the way out."""
    with (
        (setup.root / "stdout.log").open("wb") as out,
        (setup.root / "stderr.log").open("wb") as err,
    ):
        proc = subprocess.Popen(
            argv, cwd=setup.root, env=dict(env), stdout=out, stderr=err, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop(proc, setup, label)


def stop(proc: subprocess.Popen[bytes], setup: Setup, label: str) -> None:
    """SIGTERM (it stops its children itself), then SIGKILL every group that is left.

    supervisord stops its programs one group per main-loop pass (under a second
    each), so with 100 programs the grace runs out and the rest are killed here.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            print(f"  {label} did not stop within {STOP_GRACE_SECONDS:g}s: killing", flush=True)
    groups = {proc.pid}  # a session leader: its group id is its pid
    left = workers(setup)
    for worker in left:
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            groups.add(os.getpgid(worker.pid))
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for worker in left:
        with contextlib.suppress(psutil.Error):
            worker.kill()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if left:
        print(f"  {label} left {len(left)} children running: killed", flush=True)


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far, to the nanosecond where Linux says it (the sum of its
    threads' ``schedstat``: user + system ticks of 10 ms would blur figures this small);
    else psutil's user + system. A thread that ends within the window would go uncounted:
    neither supervisor ends one while nothing changes (ours keeps its worker threads)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        total = 0
        for task in tasks:
            path = f"/proc/{pid}/task/{task}/schedstat"
            with contextlib.suppress(FileNotFoundError), open(path, encoding="ascii") as stat:
                total += int(stat.read().split()[0])  # (a thread just gone: suppressed)
        return total / 1e9
    except OSError:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)


def measure(
    proc: subprocess.Popen[bytes], setup: Setup, label: str, seconds: float, warmup: float
) -> Result:
    """The supervisor's own CPU over ``seconds`` once every child beats and ``warmup`` passed."""
    ready = wait_ready(proc, setup, label)
    print(f"  {label}: all {len(setup.dbs)} heartbeating after {ready:.1f}s", flush=True)
    time.sleep(warmup)
    if proc.poll() is not None:
        raise RuntimeError(f"{label} exited with {proc.returncode} during the warm-up")
    load = os.getloadavg()[0]
    before, started = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds)
    after, elapsed = cpu_seconds(proc.pid), time.monotonic() - started
    if proc.poll() is not None:
        raise RuntimeError(f"{label} exited with {proc.returncode} during the measurement")
    used = after - before
    return Result(
        label=label,
        workflows=len(setup.dbs),
        seconds=elapsed,
        cpu_seconds=used,
        alive=len(workers(setup)),
        beating=beating(setup),
        load=max(load, os.getloadavg()[0]),
    )


def run_ours(
    root: Path, count: int, seconds: float, warmup: float, *, table_beats: bool = False
) -> Result:
    setup = dataclasses.replace(prepare(root, count), beats=root / "data" / "run" / "beats")
    config = write_supervisor_toml(setup)
    env = clean_env(
        SUPERVISOR_CONFIG=str(config),
        SUPERVISOR_DATA_DIR=str(root / "data"),
        PYTHONPATH=str(REPO),
        **({"BENCH_TABLE_BEATS": "1"} if table_beats else {}),
    )
    label = f"ours, beats {'in the table' if table_beats else 'by file'}"
    print(f"running {label} over {count} workflows ...", flush=True)
    argv = [sys.executable, "-m", "supervisor", "run", "--json"]
    with running(argv, setup, env, label) as proc:
        return measure(proc, setup, label, seconds, warmup)


def run_supervisord(
    root: Path, supervisord: Path, version: str, *, count: int, seconds: float, warmup: float
) -> Result:
    setup = prepare(root, count)
    conf = write_supervisord_conf(setup)
    label = f"supervisord {version}"
    print(f"running {label} over {count} programs ...", flush=True)
    argv = [str(supervisord), "--nodaemon", "--configuration", str(conf)]
    with running(argv, setup, clean_env(), label) as proc:
        return measure(proc, setup, label, seconds, warmup)


def report(results: list[Result], warmup: float) -> None:
    print()
    print(
        f"supervisor CPU, {HEARTBEAT_SECONDS:g} s heartbeats, after a {warmup:g} s warm-up "
        f"({psutil.cpu_count()} cores; its own process only, not its children)"
    )
    header = (
        f"{'supervisor':<34} {'workflows':>9} {'seconds':>8} {'CPU s':>8} "
        f"{'% of a core':>11} {'alive':>6} {'beating':>8} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.label:<34} {r.workflows:>9} {r.seconds:>8.1f} {r.cpu_seconds:>8.2f} "
            f"{r.percent:>10.2f}% {r.alive:>6} {r.beating:>8} {r.load:>5.2f}"
        )
    *ours, theirs = results
    for mine in ours:
        ratio = f"{mine.percent / theirs.percent:.2f}x" if theirs.cpu_seconds > 0 else "n/a"
        print(f"ratio {mine.label} / supervisord: {ratio}   (goal: <= 1.00x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workflows", type=int, default=100, help="children (default 100)")
    parser.add_argument("--seconds", type=float, default=60.0, help="window (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="before it (default 10)")
    args = parser.parse_args(argv)
    if args.workflows < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--workflows must be >= 1, --seconds > 0, --warmup >= 0")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="supervisor-overhead-") as scratch:
            root = Path(scratch)
            supervisord, version = install_supervisord(root / "venv")
            ours = run_ours(root / "ours", args.workflows, args.seconds, args.warmup)
            table = run_ours(
                root / "ours-table", args.workflows, args.seconds, args.warmup, table_beats=True
            )
            theirs = run_supervisord(
                root / "theirs",
                supervisord,
                version,
                count=args.workflows,
                seconds=args.seconds,
                warmup=args.warmup,
            )
    except KeyboardInterrupt:
        print("interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    report([ours, table, theirs], args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
