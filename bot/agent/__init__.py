"""The chat side of the agent bridge: routing messages to sessions, progress, approvals, answers."""
