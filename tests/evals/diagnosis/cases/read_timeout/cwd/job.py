"""The read_timeout workflow."""
