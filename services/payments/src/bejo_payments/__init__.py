"""bejo payments service."""
