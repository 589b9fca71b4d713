"""Runs workflows as processes, watches their health and publishes events."""
