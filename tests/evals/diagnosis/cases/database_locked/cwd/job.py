"""The database_locked workflow."""
