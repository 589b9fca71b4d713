"""Recorded failures, each with the diagnosis it deserves: /why is scored on them."""
