"""The json_reply_failed_validation workflow."""
