"""The ten example applications of troth (EXAMPLES.md), each runnable with ``python -m examples.<name>``."""
