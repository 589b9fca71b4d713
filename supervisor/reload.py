"""Restart a workflow when its script changes (``watch`` in the TOML).

Parent directories are watched rather than the files, because editors save by
writing a new file and renaming it over the old one, which a watch on the
old file's inode would miss.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from watchfiles import awatch

log = logging.getLogger("supervisor")
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every batch at INFO

OnChange = Callable[[str, str], Awaitable[None]]


async def watch_scripts(
    watched: Mapping[str, Sequence[Path]], debounce_seconds: float, on_change: OnChange
) -> None:
    """Call ``on_change(name, path)`` once per burst of changes to a workflow's files."""
    owners: dict[Path, list[str]] = {}
    for name, paths in watched.items():
        for path in paths:
            owners.setdefault(path.resolve(), []).append(name)
    directories = sorted({str(path.parent) for path in owners})

    def ours(_change: object, changed: str) -> bool:
        """Only the watched files: a log or a build next to a script must not restart it."""
        return Path(changed) in owners

    async for changes in awatch(
        *directories, watch_filter=ours, debounce=int(debounce_seconds * 1000), step=50
    ):
        touched: dict[str, str] = {}
        for _change, changed in changes:
            for name in owners.get(Path(changed), []):
                touched[name] = changed
        for name, changed in touched.items():
            try:
                await on_change(name, changed)
            except Exception:
                log.exception("reload of %s failed", name)
