"""``python -m bot`` (Telegram) and ``python -m bot --console`` (stdin/stdout)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from bot.console import run_console
from bot.healthcheck import Pinger
from bot.lock import AlreadyRunning, InstanceLock
from bot.redact import install_redaction
from bot.settings import BotSettings
from bot.systemd import SystemdNotifier
from supervisor.agent.bridge import BackendUnavailable, check_backend
from supervisor.agentsettings import AgentSettings
from supervisor.core import Supervisor
from supervisor.fdlimit import raise_fd_limit
from supervisor.fleet.registry import FleetRefused
from supervisor.secrets import Redactor
from supervisor.settings import one_line
from supervisor.startup import StartupError, load_supervision

EXIT_CONFIG = 2
log = logging.getLogger("bot")


async def _serve(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run(stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Run the workflows and the Telegram bot that commands them (settings: .env).",
    )
    parser.add_argument(
        "--console", action="store_true", help="commands on stdin, alerts on stdout"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        # The console is a chat: keep its screen for replies and alerts unless asked.
        level=os.environ.get("LOG_LEVEL", "WARNING" if args.console else "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = BotSettings()
        supervisor_settings, workflows = load_supervision(
            check_control_db=True, models=[BotSettings]
        )
        agent = AgentSettings()
        check_backend(agent)
    except ValidationError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except (StartupError, BackendUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    secrets = [
        settings.token or "",
        settings.ping_url or "",
        os.environ.get("ANTHROPIC_API_KEY", ""),
    ]
    install_redaction(secrets)
    if not args.console:
        if not settings.token:
            print(
                "error: TELEGRAM_BOT_TOKEN is not set; set it (see .env.example) "
                "or run with --console",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        if settings.telegram_chat_id is None:
            print(
                "error: TELEGRAM_CHAT_ID is not set: the chat that gets alerts "
                "and may command the bot",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    raise_fd_limit(len(workflows))  # after the checks above: their refusals stay one line
    lock = InstanceLock(
        supervisor_settings.data_dir, "console" if args.console else settings.token or ""
    )
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # What the logs never show, no request to a model carries either (supervisor.secrets).
    supervisor = Supervisor(supervisor_settings, workflows, redactor=Redactor(secrets), agent=agent)
    try:
        if args.console:
            pinger = Pinger.configured(settings)
            alerting = settings.alerting
            asyncio.run(
                _serve(lambda stop: run_console(supervisor, stop, pinger=pinger, alerting=alerting))
            )
        else:
            from bot.telegram_app import TelegramBot

            telegram = TelegramBot(settings, supervisor, SystemdNotifier())
            asyncio.run(_serve(telegram.run))
    except FleetRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
