"""Benchmarks: `python -m bench` (full, about 20 min on 2 cores) or `--quick`."""
