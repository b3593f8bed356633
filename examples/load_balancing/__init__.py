"""Example: Load balancing (see README.md)."""
