"""Recursive factorial (docs/examples/recursive-factorial.md): a durable function that calls itself across a
worker group."""
