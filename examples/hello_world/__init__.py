"""Example: Hello world (see README.md)."""
