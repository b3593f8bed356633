"""Example: MCP tools — a durable workflow behind a Model Context Protocol tool (see README.md)."""
