"""The dns_failure workflow."""
