"""Schedule (EXAMPLES.md §6): a function run on a cron schedule kept by the server."""
