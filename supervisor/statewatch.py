"""Watching the state databases' files, so that a write is read at once, not at the next poll.

Linux's inotify, on the directories that hold the databases: a directory and
not the file, because SQLite creates and deletes ``-wal`` and ``-journal``
next to the database and a database replaced by another is a new inode. One
thread blocks on the inotify descriptor, so it never wakes while nothing is
written. It wakes at most every ``DEBOUNCE_SECONDS`` and takes every change
queued meanwhile, so a burst (a commit can be several writes; a hundred workflows
heartbeat at once) is one batch, and hands the names of the workflows whose
files changed to ``on_batch``, in that thread, which may ask to be called again
after a while even if nothing else changes (a read not due yet).

Where inotify is missing (not Linux) or refused (``fs.inotify.max_user_instances``
or ``max_user_watches`` used up, a directory that does not exist yet), the
workflows concerned are simply not watched: ``covered`` says so, and the
caller polls them (``supervisor.health``). ``watchfiles``, which
``supervisor.reload`` uses for scripts, is not used here: its watcher takes the
GIL every ``step`` (to look for a stop request) even while nothing changes, and
each batch crosses two threads and an anyio task group before any read, where
this thread sleeps in ``poll`` and reads the databases itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("supervisor")

# The thread wakes at most this often: long enough to gather a crowd of heartbeats into
# one batch (reads one after another cost about half what lone ones do), short enough
# that an error event stays well inside the 100 ms it may take after its write.
DEBOUNCE_SECONDS = 0.05

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
# Written (the database, its WAL or rollback journal), or appeared, went, was replaced,
# changed mode; and the directory itself going away. Never IN_ACCESS nor IN_OPEN:
# the supervisor's own reads would wake it.
WATCH_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
_READ_BYTES = 64 * 1024
# Files beside a database whose change is the database's: not -shm, which SQLite writes
# through a memory map (no event) and which holds no data of its own.
SUFFIXES = ("", "-wal", "-journal")

Batch = frozenset[str] | None  # the workflows whose files changed; None: events were lost
# Called with each batch (and with an empty one when the time it asked for is up);
# returns None, or the seconds after which it wants to be called again regardless.
OnBatch = Callable[[Batch], float | None]


class _Inotify:
    """The three calls, through libc (the standard library has no binding)."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise OSError(errno.ENOSYS, "inotify is Linux's")
        libc = ctypes.CDLL(None, use_errno=True)
        self._init1 = libc.inotify_init1
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._remove = libc.inotify_rm_watch
        self._remove.argtypes = (ctypes.c_int, ctypes.c_int)

    def open(self) -> int:
        fd = int(self._init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            raise _errno_error("inotify_init1")
        return fd

    def add(self, fd: int, directory: str) -> int:
        wd = int(self._add(fd, os.fsencode(directory), WATCH_MASK))
        if wd < 0:
            raise _errno_error(f"watching {directory}")
        return wd

    def remove(self, fd: int, wd: int) -> None:
        self._remove(fd, wd)  # fails only for a watch the kernel already dropped


def _errno_error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def open_inotify() -> tuple[_Inotify, int]:
    """The binding and a new inotify descriptor; OSError where there is none to have."""
    binding = _Inotify()
    return binding, binding.open()


class StateWatch:
    """Calls ``on_batch`` (in its own thread) with the workflows whose state files changed.

    ``track`` says which database each workflow has; it may be called again (a
    directory that did not exist is watched once it does). All methods are
    safe to call from any thread.
    """

    def __init__(self, on_batch: OnBatch, *, debounce: float | None = None) -> None:
        self._on_batch = on_batch
        self._debounce = DEBOUNCE_SECONDS if debounce is None else debounce
        self._lock = threading.Lock()
        self._inotify: _Inotify | None = None
        self._fd = -1
        self._wake_read = self._wake_write = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._paths: dict[str, Path] = {}
        self._resolved: dict[str, tuple[str, str]] = {}  # name: (real directory, file name)
        self._watches: dict[str, int] = {}  # real directory: watch descriptor
        self._owners: dict[int, dict[bytes, tuple[str, ...]]] = {}  # wd: file name: workflows
        self._watched: frozenset[str] = frozenset()
        self._refused: set[str] = set()  # directories whose watch failed (logged once)

    def start(self) -> bool:
        """Open inotify and start the thread; False (logged) when this system gives none."""
        with self._lock:
            if self._stopping:
                return False
            try:
                self._inotify, self._fd = open_inotify()
            except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify
                # None on this system is how it is; refused (its limits used up) is news.
                missing = not isinstance(exc, OSError) or exc.errno == errno.ENOSYS
                level = logging.INFO if missing else logging.WARNING
                log.log(level, "state files not watched (%s): polling them instead", exc)
                return False
            self._wake_read, self._wake_write = os.pipe()
            self._thread = threading.Thread(target=self._run, name="state-watch", daemon=True)
            self._thread.start()
            return True

    def stopping(self) -> bool:
        return self._stopping

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def covered(self) -> frozenset[str]:
        """The workflows a write of whose database this watch sees (the others: poll them)."""
        return self._watched if self.alive else frozenset()

    def track(self, paths: Mapping[str, Path]) -> frozenset[str]:
        """Watch the directory of each workflow's database; returns those not watched."""
        with self._lock:
            if self._inotify is None or self._stopping:
                return frozenset(paths)
            if paths == self._paths and len(self._watched) == len(paths):
                return frozenset()  # every one watched already: nothing to retry
            if paths != self._paths:
                self._paths = dict(paths)
                self._resolved = {}
            for name, path in self._paths.items():
                if name not in self._resolved or name not in self._watched:
                    real = os.path.realpath(path)  # SQLite writes -wal beside the link's target
                    self._resolved[name] = (os.path.dirname(real), os.path.basename(real))
            self._rebuild()
            return frozenset(self._paths) - self._watched

    def _rebuild(self) -> None:
        """Add the watches missing, drop the ones no longer needed, remap file names."""
        assert self._inotify is not None
        wanted = {directory for directory, _ in self._resolved.values()}
        for directory in list(self._watches):
            if directory not in wanted:
                self._inotify.remove(self._fd, self._watches.pop(directory))
        for directory in sorted(wanted - set(self._watches)):
            try:
                self._watches[directory] = self._inotify.add(self._fd, directory)
            except OSError as exc:  # tried again at each track: said once
                quiet = exc.errno == errno.ENOENT or directory in self._refused
                self._refused.add(directory)
                level = logging.DEBUG if quiet else logging.WARNING
                log.log(level, "state files in %s not watched (%s): polled", directory, exc)
        owners: dict[int, dict[bytes, tuple[str, ...]]] = {}
        watched = set()
        for name, (directory, filename) in self._resolved.items():
            wd = self._watches.get(directory)
            if wd is None:
                continue
            files = owners.setdefault(wd, {})
            for suffix in SUFFIXES:
                key = os.fsencode(filename + suffix)
                files[key] = (*files.get(key, ()), name)
            watched.add(name)
        self._owners = owners
        self._watched = frozenset(watched)

    def stop(self) -> None:
        """End the thread (a batch being read finishes first) and close the descriptors."""
        with self._lock:
            self._stopping = True
        if self._wake_write >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_write, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        for fd in (self._fd, self._wake_read, self._wake_write):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._wake_read = self._wake_write = -1

    def _run(self) -> None:
        changes = select.poll()  # a change, or stop
        changes.register(self._fd, select.POLLIN)
        changes.register(self._wake_read, select.POLLIN)
        stop = select.poll()  # stop only: changes wait in the kernel's queue meanwhile
        stop.register(self._wake_read, select.POLLIN)
        again: float | None = None  # what on_batch asked: a call this soon, changes or not
        woke = time.monotonic() - self._debounce
        try:
            while not self._stopping:
                # At most one wake per debounce: a burst (a hundred workflows heartbeating,
                # a commit's several writes) becomes one batch; a call asked for sooner
                # waits for the same wake.
                rest = woke + self._debounce - time.monotonic()
                if rest > 0:
                    stop.poll(rest * 1000)
                    if again is not None:
                        again -= rest
                if self.stopping():
                    return
                if again is None:
                    changes.poll()  # nothing pending: no wake-up at all until a change
                elif again > 0:
                    changes.poll(again * 1000)
                woke = time.monotonic()
                if self.stopping():
                    return
                batch = self._take()
                try:
                    again = self._on_batch(batch)
                except Exception:
                    again = None
                    log.exception("reading the changed state files failed")
        except Exception:
            log.exception("watching the state files failed: polling them instead")
        finally:
            self._stopping = True

    def _take(self) -> Batch:
        """Every event queued, as the workflows they concern (None: some were lost)."""
        chunks = []
        while True:
            try:
                chunk = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        names: set[str] = set()
        lost = False
        with self._lock:
            owners = self._owners
            offset, size = 0, len(data)
            while offset < size:
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                offset = start + length
                if mask & IN_Q_OVERFLOW:
                    lost = True
                    continue
                files = owners.get(wd)
                if files is None:
                    continue
                if mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                    self._lose(wd)  # the directory went: its workflows are polled again
                    for owning in files.values():
                        names.update(owning)
                    continue
                workflows = files.get(data[start:offset].rstrip(b"\0"), ())
                names.update(workflows)
        return None if lost else frozenset(names)

    def _lose(self, wd: int) -> None:
        """Forget a watch the kernel dropped or whose directory moved; ``track`` retries it."""
        assert self._inotify is not None
        for directory, known in list(self._watches.items()):
            if known == wd:
                del self._watches[directory]
                self._inotify.remove(self._fd, wd)
        files = self._owners.get(wd, {})
        gone = {name for workflows in files.values() for name in workflows}
        self._owners = {key: value for key, value in self._owners.items() if key != wd}
        self._watched = self._watched - gone
