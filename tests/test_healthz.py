"""``/healthz`` and ``/readyz`` on ``METRICS_ADDR``, asked over HTTP of a real bot.

Healthy is an event loop that turns and a control DB that takes writes: a
test holds the SQLite control DB's write lock from another connection and
watches ``/healthz`` say 503 with the reason, then 200 once it lets go.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from supervisor.core import Supervisor
from supervisor.dbengine import make_engine
from supervisor.observe.observer import Observer
from tests.bot_harness import BotRig, bot_running, worker_table
from tests.supervisor_harness import resolve, settings

ANY_PORT = "127.0.0.1:0"


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def get(port: int, path: str) -> tuple[int, str]:
    """One request, from a thread: the bot's loop goes on meanwhile."""
    return await asyncio.to_thread(_get, port, path)


def port_of(rig: BotRig) -> int:
    metrics = rig.bot.service.metrics
    assert metrics is not None
    assert metrics.port is not None
    return metrics.port


async def answered_until(
    port: int,
    path: str,
    condition: Callable[[int, str], bool],
    timeout: float = 20.0,  # noqa: ASYNC109
) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await get(port, path)
        if condition(status, body):
            return status, body
        assert time.monotonic() < deadline, f"never held; last answer: {status} {body!r}"
        await asyncio.sleep(0.1)


async def test_a_running_bot_is_healthy_and_ready_and_other_paths_are_404(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)], metrics_addr=ANY_PORT) as rig:
        port = port_of(rig)
        assert await answered_until(port, "/healthz", lambda status, _: status == 200) == (
            200,
            "ok\n",
        )
        assert await get(port, "/readyz") == (200, "ready\n")
        assert (await get(port, "/nothing"))[0] == 404
        assert (await get(port, "/"))[0] == 404


async def test_a_control_db_locked_by_another_connection_is_503_with_the_reason(
    tmp_path: Path,
) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)], metrics_addr=ANY_PORT) as rig:
        port = port_of(rig)
        await answered_until(port, "/healthz", lambda status, _: status == 200)
        path = make_url(rig.supervisor.settings.control_db_url).database
        assert path is not None
        holder = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            await asyncio.to_thread(holder.execute, "BEGIN EXCLUSIVE")
            status, body = await answered_until(port, "/healthz", lambda status, _: status != 200)
            assert status == 503
            assert body == "control DB does not accept writes: database is locked\n"
            assert await get(port, "/readyz") == (200, "ready\n")  # started is still started
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert await answered_until(port, "/healthz", lambda status, _: status == 200) == (
            200,
            "ok\n",
        )


async def test_a_stuck_event_loop_is_503_and_healthy_again_once_it_turns(tmp_path: Path) -> None:
    async with bot_running(tmp_path, [worker_table(tmp_path)], metrics_addr=ANY_PORT) as rig:
        port = port_of(rig)
        await answered_until(port, "/healthz", lambda status, _: status == 200)
        seen: list[tuple[int, str]] = []
        answered = threading.Event()

        def ask_until_unhealthy() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status, body = _get(port, "/healthz")
                if status != 200:
                    seen.append((status, body))
                    break
                time.sleep(0.1)
            answered.set()

        asker = threading.Thread(target=ask_until_unhealthy)
        asker.start()
        answered.wait(40)  # blocks the bot's event loop, as a blocking call in a handler would
        asker.join()
        [(status, body)] = seen
        assert status == 503
        assert body.startswith("event loop stuck: no turn for ")
        await answered_until(port, "/healthz", lambda status, _: status == 200)


async def test_readyz_is_503_until_the_workflows_are_started(tmp_path: Path) -> None:
    """The observer of a supervisor not started yet: ``Service.start`` calls ``ready`` once
    the supervisor's startup has started the workflows, ``stopping`` first thing in ``stop``."""
    conf = settings(tmp_path)
    supervisor = Supervisor(conf, resolve(tmp_path, conf, worker_table(tmp_path)))
    engine = make_engine(conf.control_db_url)
    observer = Observer(ANY_PORT, supervisor, engine, conf.control_db_url, conf.node)
    await observer.start()
    port = observer.port
    try:
        assert port is not None
        status, body = await get(port, "/readyz")
        assert (status, body) == (503, "starting: the workflows are not started yet\n")
        observer.ready()
        assert await get(port, "/readyz") == (200, "ready\n")
        observer.stopping()
        assert await get(port, "/readyz") == (503, "stopping\n")
    finally:
        await observer.stop()
        engine.dispose()
    assert observer.port is None
    with pytest.raises(urllib.error.URLError, match="Connection refused"):  # the port is free
        await get(port, "/readyz")


async def test_on_postgres_healthy_means_the_server_takes_a_transaction(
    tmp_path: Path, postgres_url: str
) -> None:
    """``SELECT txid_current()`` is the probe; a server that is not there is the reason."""
    conf = settings(tmp_path, db_url=postgres_url, node="node-a")
    async with bot_running(
        tmp_path, [worker_table(tmp_path)], conf=conf, metrics_addr=ANY_PORT
    ) as rig:
        await answered_until(port_of(rig), "/healthz", lambda status, _: status == 200)
    with socket.socket() as nobody:  # a port nothing listens on
        nobody.bind(("127.0.0.1", 0))
        gone = make_url(postgres_url).set(host="127.0.0.1", port=nobody.getsockname()[1])
        url = gone.render_as_string(hide_password=False)
        conf = settings(tmp_path / "gone", db_url=url)
        supervisor = Supervisor(conf, resolve(tmp_path, conf, worker_table(tmp_path)))
        engine = make_engine(url)
        observer = Observer(ANY_PORT, supervisor, engine, url, conf.node)
        await observer.start()
        try:
            assert observer.port is not None
            status, body = await answered_until(
                observer.port, "/healthz", lambda _, body: "not checked" not in body
            )
        finally:
            await observer.stop()
            engine.dispose()
    assert status == 503
    assert body.startswith("control DB does not accept writes: connection ")
