"""The Telegram side of the control plane: commands, alerts, delivery, console mode."""

import os

# Opt in to python-telegram-bot's coming timedelta durations (retry_after and
# friends) now, instead of a deprecation warning on every 429; the transport
# reads both forms.
os.environ.setdefault("PTB_TIMEDELTA", "true")
