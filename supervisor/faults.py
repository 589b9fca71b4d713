"""Fault injection for tests: die at a named instant, as a kill -9 would.

Promises like "a kill at any instant loses no alert" are only worth something
if a test can kill at the worst instant, not near it. Code marks such instants
with ``crash_point("name")``; a test process started with
``SUPERVISOR_FAULT=name`` SIGKILLs itself the first time it reaches that point.
With the variable unset (always, outside tests) a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

FAULT_VARIABLE = "SUPERVISOR_FAULT"


def crash_point(name: str) -> None:
    """SIGKILL this process here when ``SUPERVISOR_FAULT`` names this point."""
    if os.environ.get(FAULT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
