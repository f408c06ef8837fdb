"""bejo API gateway."""
