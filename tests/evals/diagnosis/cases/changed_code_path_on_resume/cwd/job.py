"""The changed_code_path_on_resume workflow."""
