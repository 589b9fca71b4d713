"""The overloaded_529 workflow."""
