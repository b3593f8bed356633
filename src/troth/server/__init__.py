"""The troth server: protocol core, stores, timers, delivery and HTTP."""
