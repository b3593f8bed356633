"""Fan-out / fan-in (docs/examples/fan-out-fan-in.md): parallel durable leaves, results collected in input
order."""
