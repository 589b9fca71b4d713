"""Console mode: the same commands and alerts over stdin and stdout.

For trying the product with no token (``make run``) and for a terminal on the
server. Lines are read by a daemon thread so that shutting down never waits
on a blocked ``readline``; end of input stops the bot.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import TextIO

from bot.audit import CONSOLE
from bot.commands import Follow, Reply
from bot.healthcheck import Pinger
from bot.outbox import Pacing
from bot.service import Service
from bot.settings import Alerting
from bot.transport import ChatTarget, ConsoleTransport
from supervisor.core import Supervisor

CONSOLE_TARGET = ChatTarget(0)
PROMPT_HINT = "Type /help for commands, /status to see the workflows; Ctrl-D quits."


def _read_lines(
    stream: TextIO, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]
) -> None:
    for raw in stream:
        loop.call_soon_threadsafe(queue.put_nowait, raw)
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def run_console(
    supervisor: Supervisor,
    stop: asyncio.Event,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    pinger: Pinger | None = None,
    follow: Follow | None = None,
    alerting: Alerting | None = None,
) -> None:
    """Serve commands from ``stdin`` until it ends or ``stop`` is set."""
    transport = ConsoleTransport(stdout or sys.stdout, logs_dir=supervisor.settings.logs_dir)
    pacing = Pacing(per_chat_seconds=0, per_group_seconds=0, gather_seconds=0)
    service = Service(
        supervisor,
        transport,
        CONSOLE_TARGET,
        pacing=pacing,
        follow=follow,
        pinger=pinger,
        alerting=alerting,
    )
    await service.start()
    print(PROMPT_HINT, file=transport.stream, flush=True)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    reader = threading.Thread(
        target=_read_lines,
        args=(stdin or sys.stdin, asyncio.get_running_loop(), lines),
        daemon=True,
    )
    reader.start()
    stopping = asyncio.create_task(stop.wait())
    followers: set[asyncio.Task[None]] = set()
    while True:
        getting = asyncio.create_task(lines.get())
        await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():
            getting.cancel()
            break
        text = getting.result()
        if text is None:
            break
        words = text.split()
        if not words:
            continue
        reply = await service.router.handle(words[0], words[1:], CONSOLE)
        for message in reply.messages:
            transport.show(message)
        if reply.document is not None:
            await transport.send_document(CONSOLE_TARGET, reply.document)
        if reply.later is not None:  # a terminal waits for it: nothing else is typed meanwhile
            transport.show(await reply.later)
        if reply.updates is not None:
            task = asyncio.create_task(_follow(transport, reply))
            followers.add(task)
            task.add_done_callback(followers.discard)
    stopping.cancel()
    for task in followers:
        task.cancel()
    await service.stop()


async def _follow(transport: ConsoleTransport, reply: Reply) -> None:
    """A terminal keeps what it printed: only the lines new since the last update go out."""
    assert reply.updates is not None
    async for update in reply.updates:
        for text in update.new_lines:
            print(f"~ {text}", file=transport.stream, flush=True)
        if update.ended is not None:
            print(f"~ (stopped following: {update.ended})", file=transport.stream, flush=True)
