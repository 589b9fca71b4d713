"""The too_many_open_files workflow."""
