"""The disk_full workflow."""
