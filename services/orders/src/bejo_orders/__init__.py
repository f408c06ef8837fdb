"""bejo orders service."""
