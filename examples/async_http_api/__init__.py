"""Example: Async HTTP API (see README.md)."""
