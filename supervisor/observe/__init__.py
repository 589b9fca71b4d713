"""``METRICS_ADDR``: ``/metrics``, ``/healthz`` and ``/readyz`` of a bot or a headless node."""
