"""Reproducible benchmarks of troth (run with ``make bench``)."""
