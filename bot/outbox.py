"""The bot's outbox: every alert and every command reply is a database row before a message.

``enqueue`` commits an alert, ``reply`` a command's answer, to ``bot_outbox``
before it returns, so a crash, a restart or a Telegram outage loses nothing.
One worker task delivers the rows, paced for Telegram's limits
(``bot.pacing``) with one pacer for alerts and replies alike, retrying 429s
(after their ``retry_after``), 5xx and network errors forever, coalescing
bursts of alerts into few messages, editing one message per incident key, and
holding non-critical alerts while the chat, or their workflow, is muted. A 400
or 403 is given up and logged.

What an alert says about time is added at send time (``bot.notices``): one
that arrives more than 30 s after its event says when it happened, in the
configured zone. An alert to repeat until acknowledged (a give-up) is
reminded of loudly every period until ``acknowledge``; the reminders are
rows, so they outlive a restart. Sound is the alert's own: the outbox never
makes an alert louder or quieter for its timing or for what it replaced. What
it does not promise: an edit of an incident's message never rings (Telegram
edits are silent), so an alert that must ring needs a key of its own.

Each chat is a line of its own, first in first out, except that a reply goes
before the alerts waiting for its chat and may burst a little ahead of the
chat's spacing: the user is waiting for it. So the messages of one reply, and
the replies to successive commands, arrive in order; a backlog of alerts, or
another chat's outage, does not hold a reply up.

Replies survive a restart of the bot: one still pending is sent by the next
run, late rather than never. What does not survive is the in-memory part:
after a restart nobody is told the reply's message id, so ``/tail NAME
follow`` shows its first page and is not followed.

Exactly once, with one small window: a row is marked sent in the transaction
that records its message id, right after Telegram accepts it, and a sent row
is never sent again. A crash between Telegram's reply and that commit sends
the message once more after a restart, and so does a request that timed out
after Telegram processed it: a rare duplicate, never a loss.

The event loop never waits on the control DB (it also answers commands and
feeds the systemd watchdog, and SQLite may be locked for its whole busy
timeout): every query runs on the outbox's one DB thread, awaited. One
thread, not ``asyncio.to_thread``'s pool, because it runs the queries one at
a time in the order they were asked and hands their results back in that
order, as the loop did when it ran them itself: rows keep the order of the
calls that wrote them, and the worker cannot see a reply's rows before
``reply`` has registered the future their delivery resolves. Futures are
only ever touched on the loop. ``save_all`` is the exception: it blocks,
for a caller's own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import partial
from typing import ParamSpec, TypeVar

import sqlalchemy as sa

from bot.notices import SendTime
from bot.outbox_store import MessageOrigin, OutboxStore
from bot.outbox_tables import Alert
from bot.pacing import Batch, OutboxRow, Pacer, Pacing, backoff, compose, first_line, fit_batch
from bot.text import Message
from bot.transport import (
    ChatTarget,
    ChatTransport,
    MessageGone,
    RetryLater,
    TransientError,
    Undeliverable,
)

__all__ = ["Alert", "Mute", "Notifier", "Pacing"]

log = logging.getLogger(__name__)

WORKER_RETRY_SECONDS = 1.0
IDLE_POLL_SECONDS = 0.01
IN_FLIGHT_GRACE_SECONDS = 5.0
ORIGIN_WAIT_SECONDS = 5.0  # a reply to a message still being recorded waits this long for it
KEEP_DELIVERED_SECONDS = 30 * 86400  # delivered rows are history; pending ones are kept forever
DEFAULT_PACING = Pacing()

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Mute:
    """A mute in force: of one workflow's alerts, or of all (``workflow`` None), until when."""

    workflow: str | None
    until: datetime


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Notifier:
    """The durable outbox and its single delivery worker: alerts to ``target``, replies anywhere.

    ``clock`` (epoch seconds) decides when rows are due, late, muted or to
    be reminded of, so tests move time instead of waiting; ``timezone`` is
    the one the chat's times are shown in (``ALERT_TIMEZONE``).
    """

    def __init__(
        self,
        engine: sa.Engine,
        transport: ChatTransport,
        target: ChatTarget,
        *,
        pacing: Pacing = DEFAULT_PACING,
        clock: Callable[[], float] = time.time,
        timezone: tzinfo = UTC,
        idle_poll_seconds: float | None = None,
        on_delivered: Callable[[float], None] | None = None,
        on_saved: Callable[[], None] | None = None,
    ) -> None:
        """``idle_poll_seconds``: look for new rows this often even when nobody wakes the
        worker (a fleet: other nodes write alerts into the same outbox). ``on_delivered``
        hears, for each alert Telegram took, the seconds since its event (``/metrics``);
        ``on_saved``, on the loop, that rows were committed (a fleet node tells the poller)."""
        self._on_delivered = on_delivered
        self._on_saved = on_saved
        self._idle_poll = idle_poll_seconds
        self._store = OutboxStore(engine, pacing.gather_seconds, clock=clock, timezone=timezone)
        self._clock = clock
        self._tz = timezone
        self._transport = transport
        self._target = target
        self._pacing = pacing
        self._pacer = Pacer(pacing)
        self._wake = asyncio.Event()
        self._db_thread: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failure_streak = 0  # consecutive failed deliveries, for the backoff
        # Writes the DB refused, oldest first; the worker retries them.
        self._unsaved: deque[Callable[[], Awaitable[None]]] = deque()
        self._unrecorded: tuple[Batch, int, ChatTarget] | None = None
        self._settled = asyncio.Event()  # no message is between Telegram and the outbox table
        self._settled.set()
        self._waiting: dict[int, asyncio.Future[int | None]] = {}  # a reply's last row -> its id

    # -- public API ------------------------------------------------------------------------

    async def start(self, *, deliver: bool = True) -> None:
        """Forget old delivered rows and (with ``deliver``) start the worker; old pending
        rows go out too. Without it only the writes work: a fleet node that does not poll
        Telegram fills the outbox the poller delivers (``start_delivery``)."""
        await self._db(
            self._store.forget_delivered, older_than=self._clock() - KEEP_DELIVERED_SECONDS
        )
        if deliver:
            self.start_delivery()

    def start_delivery(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="outbox")

    @property
    def delivering(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop_delivery(self, flush_timeout: float = 0.0) -> None:
        """Deliver what is due within ``flush_timeout``, then stop the worker; the rest stays
        pending. A send in flight is let finish and be recorded: cancelling it after
        Telegram took it would leave the row pending and send it again later."""
        if self._task is None:
            return
        task = self._task
        try:
            await self.wait_idle(flush_timeout)
        finally:
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), IN_FLIGHT_GRACE_SECONDS)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None
            for waiting in self._waiting.values():
                waiting.cancel()
            self._waiting.clear()

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Deliver what is due within ``flush_timeout``, then stop; the rest stays pending."""
        try:
            await self.stop_delivery(flush_timeout)
        finally:
            await self._close_db_thread()

    async def enqueue(self, alert: Alert) -> None:
        """Commit ``alert`` to the outbox (before returning) and wake the worker.

        If the control DB refuses the write (locked for longer than its busy
        timeout, disk full), the alert waits in memory and the worker writes
        it as soon as the DB takes writes again: late, but not lost.
        """
        await self._save(partial(self._db, self._store.save, alert), "an alert")

    def save_all(self, alerts: Sequence[Alert], also: Callable[[sa.Connection], None]) -> None:
        """Commit ``alerts`` with what ``also`` writes, in one transaction, or raise.

        Blocking, for a worker thread (``bot.forwarding`` commits its event
        cursor this way); call ``wake`` after it.
        """
        self._store.save_all(alerts, also)

    def wake(self) -> None:
        """Rows were committed (``save_all``): deliver them."""
        self._saved()

    def look(self) -> None:
        """Another node committed rows into the shared outbox: deliver them now."""
        self._wake.set()

    def _saved(self) -> None:
        self._wake.set()
        if self._on_saved is not None:
            self._on_saved()

    async def reply(
        self, target: ChatTarget, messages: Sequence[Message], key: str | None = None
    ) -> asyncio.Future[int | None]:
        """Commit a command's reply to ``target`` (before returning) and wake the worker.

        The future gets the message id of the reply's last message once it is
        sent, or None if Telegram refused it. With ``key`` the last message
        is edited by the next reply with that key, or replaced while it still
        waits (``/tail NAME follow``'s updates, paced like every message); the
        replaced reply's future is cancelled. If the DB refuses the write, the
        reply waits in memory as an alert would.
        """
        delivered: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

        async def save() -> None:
            ids = await self._db(self._store.save_reply, target, messages, key)
            if ids:
                replaced = self._waiting.pop(ids[-1], None)
                if replaced is not None:
                    replaced.cancel()
                self._waiting[ids[-1]] = delivered

        await self._save(save, "a reply")
        return delivered

    async def _save(self, save: Callable[[], Awaitable[None]], what: str) -> None:
        try:
            await save()
        except sa.exc.SQLAlchemyError as exc:
            self._unsaved.append(save)
            log.error("outbox: control DB refused %s (%s); keeping it in memory", what, exc)
            self._wake.set()
            return
        self._saved()

    async def _save_unsaved(self) -> None:
        """Write what the DB refused earlier, oldest first; stops at the first refusal."""
        while self._unsaved:
            await self._unsaved[0]()
            self._unsaved.popleft()

    async def mute(self, until: datetime, workflow: str | None = None) -> None:
        """Hold non-critical alerts (of ``workflow`` only, if given) until ``until``; persisted.

        A naive ``until`` means the server's local time.
        """
        await self._db(self._store.mute, until, workflow)
        self._wake.set()

    async def unmute(self, workflow: str | None = None) -> int:
        """End ``workflow``'s mute, or (None) every mute; returns how many items the summary lists.

        The alerts no mute holds any more are summarised; those of a workflow
        still muted on its own stay held.
        """
        count = await self._db(self._store.unmute, workflow)
        self._wake.set()
        return count

    async def muted_until(self, workflow: str | None = None) -> datetime | None:
        """When ``workflow``'s alerts (None: alerts of no workflow) flow again; None if they do."""
        until = (await self._db(self._store.mutes)).until(workflow)
        return None if until is None else _when(until)

    async def mutes(self) -> list[Mute]:
        """The mutes in force, everything's first, then by workflow (for ``/status``)."""
        mutes = await self._db(self._store.mutes)
        every = [] if mutes.everything is None else [Mute(None, _when(mutes.everything))]
        return every + [Mute(name, _when(end)) for name, end in sorted(mutes.workflows.items())]

    async def acknowledge(self, workflow: str) -> int:
        """Stop repeating ``workflow``'s unacknowledged alerts; returns how many reminders ended."""
        return await self._db(self._store.acknowledge, workflow)

    async def origin(self, target: ChatTarget, message_id: int) -> MessageOrigin | None:
        """The key and workflow of the message a person replied to, if the bot sent it.

        A reply can come before the message it answers is recorded (Telegram took it,
        the outbox has not written its id yet): then the lookup waits for that record.
        """
        alert_chat = target.chat_id == self._target.chat_id
        found = await self._db(self._store.origin, target.chat_id, message_id, alert_chat)
        if found is None and not self._settled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), ORIGIN_WAIT_SECONDS)
            found = await self._db(self._store.origin, target.chat_id, message_id, alert_chat)
        return found

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 - part of the interface
        """True once nothing is pending (held rows don't count); False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not await self._idle():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(IDLE_POLL_SECONDS)
        return True

    async def _idle(self) -> bool:
        if self._unrecorded is not None or self._unsaved:
            return False
        return not await self._db(self._store.has_pending)

    # -- the DB thread ---------------------------------------------------------------------

    async def _db(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one store call on the DB thread; the loop goes on meanwhile."""
        if self._db_thread is None:
            self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_thread, partial(call, *args, **kwargs))

    async def _close_db_thread(self) -> None:
        """Let the calls already queued finish (off the loop), then end the thread."""
        if self._db_thread is not None:
            db_thread, self._db_thread = self._db_thread, None
            await asyncio.to_thread(db_thread.shutdown)

    # -- worker ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self._step()
            except Exception:
                log.exception("outbox: worker step failed; retrying")
                delay = WORKER_RETRY_SECONDS
            if delay is not None and delay <= 0:
                await asyncio.sleep(0)
                continue
            if self._idle_poll is not None:
                delay = self._idle_poll if delay is None else min(delay, self._idle_poll)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel of stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _step(self) -> float | None:
        """Do one unit of work; returns seconds until there may be more (None: until woken)."""
        if self._unrecorded is not None:
            await self._record(*self._unrecorded)
        await self._save_unsaved()
        mute_left = await self._expire_mute()
        reminder_in = await self._db(self._store.remind, self._clock())
        waits = [wait for wait in (mute_left, reminder_in) if wait is not None]
        now = self._clock()
        for head in await self._db(self._store.heads):
            target = head.target or self._target
            burst = self._pacing.reply_burst if head.urgent else 1
            wait = max(head.due_at - now, self._pacer.ready_in(target, burst=burst))
            if wait <= 0:
                riders = await self._db(self._store.riders, head, now)
                shown = SendTime(self._clock(), self._tz).shown
                await self._deliver(target, compose(fit_batch(riders, shown), shown))
                return 0.0
            waits.append(wait)
        return min(waits) if waits else None

    async def _expire_mute(self) -> float | None:
        """Summarise held rows once the mute has run out; returns seconds it has left."""
        left, summarised = await self._db(self._store.expire_mute, self._clock())
        if summarised is not None:
            log.info("outbox: mute expired, %d held alerts summarised", summarised)
        return left

    async def _deliver(self, target: ChatTarget, batch: Batch) -> None:
        self._settled.clear()
        try:
            await self._deliver_unsettled(target, batch)
        finally:
            self._settled.set()

    async def _deliver_unsettled(self, target: ChatTarget, batch: Batch) -> None:
        self._pacer.record(target)
        try:
            message_id = await self._send(target, batch)
        except RetryLater as exc:
            self._pacer.hold(target, exc.seconds)
            log.warning("outbox: Telegram asked to wait %.1fs", exc.seconds)
            await self._db(
                self._store.set,
                batch.rows,
                next_attempt_at=self._clock() + exc.seconds,
                last_error=str(exc),
            )
        except Undeliverable as exc:
            await self._give_up(batch, exc)
        except Exception as exc:
            await self._retry(batch, exc)
        else:
            self._failure_streak = 0
            self._unrecorded = (batch, message_id, target)
            await self._record(batch, message_id, target)

    async def _send(self, target: ChatTarget, batch: Batch) -> int:
        """Edit the incident's message if it has one, else send a new message."""
        known = (
            await self._db(self._store.message_for, batch.key, target.chat_id)
            if batch.key
            else None
        )
        if known is not None:
            try:
                await self._transport.edit(target, known, batch.message)
            except MessageGone:
                log.info("outbox: message for %r is gone; sending a new one", batch.key)
            else:
                return known
        return await self._transport.send(target, batch.message, silent=batch.silent)

    async def _record(self, batch: Batch, message_id: int, target: ChatTarget) -> None:
        accepted = self._clock()
        await self._db(self._store.record, batch, message_id, target.chat_id)
        self._unrecorded = None
        self._settle(batch.rows, message_id)
        self._observe(batch.rows, accepted)

    def _observe(self, rows: Sequence[OutboxRow], accepted: float) -> None:
        """Tell ``on_delivered`` how long each alert (not a reply) took from its event."""
        if self._on_delivered is None:
            return
        for row in rows:
            if not row.urgent and row.happened_at is not None:
                self._on_delivered(accepted - row.happened_at)

    def _settle(self, rows: Sequence[OutboxRow], message_id: int | None) -> None:
        """Tell whoever waits for one of ``rows`` (a reply's last message) its id, or None."""
        for row in rows:
            waiting = self._waiting.pop(row.id, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(message_id)

    async def _retry(self, batch: Batch, exc: Exception) -> None:
        """Back off exponentially; an alert is never dropped for a transient failure.

        The wait grows with the chat's run of failures, not the row's: a lone
        failure (one lost request among many) is retried at the normal pace,
        and a real outage backs off 1, 2, 4 ... seconds.
        """
        if not isinstance(exc, TransientError):
            log.error("outbox: unexpected delivery error", exc_info=exc)
        self._failure_streak += 1
        streak = self._failure_streak
        delay = 0.0 if streak == 1 else backoff(self._pacing, streak - 1)
        await self._db(self._store.retry_later, batch.rows, delay, str(exc) or type(exc).__name__)
        log.warning("outbox: delivery failed (%s); retrying with backoff", exc)

    async def _give_up(self, batch: Batch, exc: Undeliverable) -> None:
        """A merged message Telegram refuses is split up; a single refused alert fails."""
        if len(batch.rows) > 1:
            log.warning("outbox: merged message refused (%s); sending one by one", exc)
            await self._db(self._store.set, batch.rows, mergeable=False)
            return
        await self._db(self._store.fail, batch.rows, str(exc))
        self._settle(batch.rows, None)
        log.error(
            "outbox: giving up on an undeliverable message (%s): %s",
            exc,
            first_line(batch.rows[0].text),
        )
