"""bejo notifications service."""
