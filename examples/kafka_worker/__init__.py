"""Example: Kafka worker — durable per-message workflows between two topics (see README.md)."""
