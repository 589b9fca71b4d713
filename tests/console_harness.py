"""Console mode in the test's event loop: commands typed into a pipe, output in a buffer."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bot.commands import Follow
from bot.console import run_console
from supervisor.core import Supervisor
from tests.conditions import wait_until
from tests.supervisor_harness import resolve, settings


@dataclass
class ConsoleRig:
    """A running console: ``type`` a command, read what it printed."""

    supervisor: Supervisor
    keyboard: TextIO
    screen: io.StringIO

    def type(self, line: str) -> None:
        self.keyboard.write(line + "\n")
        self.keyboard.flush()

    @property
    def printed(self) -> str:
        return self.screen.getvalue()

    async def wait_printed(self, text: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await wait_until(lambda: text in self.printed, timeout)

    async def wait_state(self, workflow: str, *states: str) -> None:
        """Wait until ``workflow``'s process state is one of ``states``."""
        for _ in range(1000):
            [status] = await self.supervisor.status(workflow)
            if status.state in states:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{workflow} is {status.state}, not one of {states}")


@asynccontextmanager
async def console_running(
    tmp_path: Path, tables: Sequence[Mapping[str, Any]], *, follow: Follow | None = None
) -> AsyncIterator[ConsoleRig]:
    """The console over real workflows; on exit its input ends, as Ctrl-D would."""
    conf = settings(tmp_path)
    supervisor = Supervisor(conf, resolve(tmp_path, conf, *tables))
    read_end, write_end = os.pipe()
    stdin = os.fdopen(read_end, encoding="utf-8")
    keyboard = os.fdopen(write_end, "w", encoding="utf-8")
    screen = io.StringIO()
    task = asyncio.create_task(
        run_console(supervisor, asyncio.Event(), stdin=stdin, stdout=screen, follow=follow)
    )
    try:
        yield ConsoleRig(supervisor, keyboard, screen)
    finally:
        keyboard.close()
        await asyncio.wait_for(task, 10)
        stdin.close()
