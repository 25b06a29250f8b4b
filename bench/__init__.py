"""Benchmarks of the running stack: `python bench/run.py` (see README, "Benchmarks")."""
