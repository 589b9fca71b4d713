"""The oom_killed workflow."""
