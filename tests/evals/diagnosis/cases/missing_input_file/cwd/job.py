"""The missing_input_file workflow."""
