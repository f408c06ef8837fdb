"""Benchmarks: `make bench` (all) or `python -m bench NAME ...`. Each prints its own figures."""
