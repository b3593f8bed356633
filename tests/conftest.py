"""Test-suite wide: the store every store-independent tier runs on is chosen in ``stores``."""

pytest_plugins = ["stores"]
