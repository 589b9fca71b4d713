"""The api_401 workflow."""
