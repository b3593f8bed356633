"""Fan-out / fan-in (EXAMPLES.md §9): parallel durable leaves, results collected in input order."""
