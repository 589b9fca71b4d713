"""Seeing the bot from outside: ``/metrics``, ``/healthz`` and ``/readyz`` on ``METRICS_ADDR``.

``observer`` wires the pieces: ``metrics`` (what a scrape says), ``health``
(alive and ready), ``server`` (the HTTP thread that only renders them).
"""
