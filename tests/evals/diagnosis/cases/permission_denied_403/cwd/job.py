"""The permission_denied_403 workflow."""
