"""The authoring library for long-running agent workflows."""
