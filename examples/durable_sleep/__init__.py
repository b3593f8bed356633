"""Example: Durable sleep (see README.md)."""
