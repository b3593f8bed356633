"""The troth SDK: durable async workflows, local and remote."""
