"""Heal: a fix proposed by Claude in a git worktree, proven by gates in code, applied on a tap.

No Telegram here: the bot renders proposals and their buttons from the
events this package publishes through the supervisor.
"""
