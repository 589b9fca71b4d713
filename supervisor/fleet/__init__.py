"""Several nodes, one control plane: a fleet of supervisors sharing a Postgres control DB.

Every node supervises its own workflows and heartbeats in the DB
(``registry``); the nodes elect the one that polls Telegram and delivers the
shared outbox with a lease row (``lease``); a command for a workflow on
another node is a row in a queue its node claims (``commands``), woken by
LISTEN/NOTIFY (``listener``); ``remote.FleetSupervisor`` puts the fleet
behind the same ``SupervisorAPI`` a single node offers. ``node.FleetNode``
runs the loops. With SQLite (the default) none of this runs.
"""
