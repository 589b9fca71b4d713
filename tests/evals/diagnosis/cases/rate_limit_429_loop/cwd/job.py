"""The rate_limit_429_loop workflow."""
