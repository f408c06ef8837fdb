"""The `bejo` command line."""
