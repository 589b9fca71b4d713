"""The agent bridge's engine: a conversation with Claude about one workflow (no Telegram).

It lives beside ``diagnosis`` rather than in the bot because the agent works
in the workflow's ``cwd``, on the host that runs it, with the same secrets
rule, client and spend ledger as ``/why``; the bot only routes chat messages
to a session and renders progress, approvals and answers (``bot/agent``).
"""
