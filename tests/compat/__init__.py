"""Compatibility tests: official Resonate clients against a real troth server."""
