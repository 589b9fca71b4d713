"""Ending background tasks: cancel them all, then wait for each to finish unwinding.

One place for the pattern every loop's ``stop`` needs, so none forgets to
await the task (a cancelled task still runs its ``finally``) or lets the
expected ``CancelledError`` escape.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel every task given (None skipped), then await each one's end."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
