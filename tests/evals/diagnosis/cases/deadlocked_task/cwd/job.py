"""The deadlocked_task workflow."""
