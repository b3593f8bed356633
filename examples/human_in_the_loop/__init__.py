"""Example: Human in the loop (see README.md)."""
