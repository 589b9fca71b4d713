"""Console mode: the same commands and alerts over stdin and stdout.

For trying the product with no token (``make run``) and for a terminal on the
server. Lines are read by a daemon thread so that shutting down never waits
on a blocked ``readline``; end of input stops the bot. A picture (``/chart``) is
not drawn on the terminal: it is written as a PNG file and the console says where.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Coroutine
from functools import partial
from typing import Any, TextIO

from bot.agent.chat import ChatBridge, ChatPlace
from bot.agent.views import ConsoleView
from bot.audit import CONSOLE
from bot.commands import COMMANDS, Follow, Reply, command_name
from bot.healthcheck import Pinger
from bot.observe.pictures import attach
from bot.outbox import Pacing
from bot.service import Service
from bot.settings import Alerting
from bot.text import Message, esc
from bot.transport import ChatTarget, ConsoleTransport, Document
from supervisor.api import HostSupervisor

CONSOLE_TARGET = ChatTarget(0)
ANSWER_GRACE_SECONDS = 60.0
PROMPT_HINT = "Type /help for commands, /status to see the workflows; Ctrl-D quits."


def _read_lines(
    stream: TextIO, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]
) -> None:
    for raw in stream:
        loop.call_soon_threadsafe(queue.put_nowait, raw)
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def run_console(
    supervisor: HostSupervisor,
    stop: asyncio.Event,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    pinger: Pinger | None = None,
    follow: Follow | None = None,
    alerting: Alerting | None = None,
) -> None:
    """Serve commands from ``stdin`` until it ends or ``stop`` is set."""
    logs_dir = supervisor.settings.logs_dir
    # Pictures (/chart, the digest's) are written beside the logs; the console says where.
    transport = ConsoleTransport(
        stdout or sys.stdout, logs_dir=logs_dir, pictures_dir=logs_dir.parent / "charts"
    )
    pacing = Pacing(per_chat_seconds=0, per_group_seconds=0, gather_seconds=0)
    service = Service(
        supervisor,
        transport,
        CONSOLE_TARGET,
        pacing=pacing,
        follow=follow,
        pinger=pinger,
        alerting=alerting,
        bridge_view=lambda _: ConsoleView(transport),
    )
    heartbeats = attach(service, partial(_send_file, transport))
    await service.start()
    heartbeats.start()
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
    asking: set[asyncio.Task[None]] = set()  # agent turns
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
        if _to_bridge(service, words, asking):
            continue
        reply = await service.router.handle(words[0], words[1:], CONSOLE)
        for message in reply.messages:
            transport.show(message)
        if reply.document is not None:
            await transport.send_file(CONSOLE_TARGET, reply.document)
        if reply.later is not None:  # a terminal waits for it: nothing else is typed meanwhile
            transport.show(await reply.later)
        if reply.updates is not None:
            task = asyncio.create_task(_follow(transport, reply))
            followers.add(task)
            task.add_done_callback(followers.discard)
    stopping.cancel()
    # Input ended (a pipe, Ctrl-D): an agent still answering may finish, within its own limit.
    if asking:
        await asyncio.wait(asking, timeout=ANSWER_GRACE_SECONDS)
    for task in followers | asking:
        task.cancel()
    await heartbeats.stop()
    await service.stop()


async def _send_file(transport: ConsoleTransport, document: Document) -> None:
    await transport.send_file(CONSOLE_TARGET, document)


def _to_bridge(service: Service, words: list[str], tasks: set[asyncio.Task[None]]) -> bool:
    """Plain words, ``/ask``, ``/new``, ``/sessions``, ``/approve``: the agent bridge's.

    A turn runs in the background, so ``/approve`` can be typed while it waits.
    """
    chat, place = service.chat, ChatPlace(None)
    if not words[0].startswith("/") and command_name(words[0]) in COMMANDS:
        return False  # "status" typed without its slash is still the command
    command = command_name(words[0]) if words[0].startswith("/") else None
    work: Coroutine[Any, Any, None] | None = None
    if command is None:
        work = chat.ask(CONSOLE, place, " ".join(words))
    elif command == "ask":
        named = words[1] if len(words) > 1 and words[1] in service.supervisor.names else None
        text = " ".join(words[2:] if named else words[1:])
        work = chat.ask(CONSOLE, place, text, workflow=named)
    elif command == "approve":
        work = _say(chat, chat.decide(CONSOLE, *words[1:3]) if len(words) == 3 else None)
    elif command == "new":
        work = _show(chat, chat.new(place))
    elif command == "sessions":
        work = _show(chat, chat.sessions(place))
    if work is None:
        return False
    task = asyncio.create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return True


async def _show(chat: ChatBridge, message: Awaitable[Message]) -> None:
    await chat.view.show(ChatPlace(None), [await message], None)


async def _say(chat: ChatBridge, said: Awaitable[str] | None) -> None:
    text = await said if said is not None else "usage: /approve ID once|session|deny"
    await chat.view.show(ChatPlace(None), [Message(esc(text))], None)


async def _follow(transport: ConsoleTransport, reply: Reply) -> None:
    """A terminal keeps what it printed: only the lines new since the last update go out."""
    assert reply.updates is not None
    async for update in reply.updates:
        for text in update.new_lines:
            print(f"~ {text}", file=transport.stream, flush=True)
        if update.ended is not None:
            print(f"~ (stopped following: {update.ended})", file=transport.stream, flush=True)
