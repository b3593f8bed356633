"""The ten example applications of troth (docs/examples/index.md), each runnable with ``python -m
examples.<name>``."""
