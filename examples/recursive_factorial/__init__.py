"""Recursive factorial (EXAMPLES.md §3): a durable function that calls itself across a worker group."""
