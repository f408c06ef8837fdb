"""bejo catalog service."""
