"""Seeing the bot's workflows in the chat: ``/chart`` and the digest's picture.

``charts`` draws, ``history`` reads the event log into bands, ``heartbeats``
samples heartbeat ages, ``pictures`` wires them to the chat. ``/metrics``,
``/healthz`` and ``/readyz`` are ``supervisor.observe``'s: a headless node
serves them too.
"""
