"""Schedule (docs/examples/schedule.md): a function run on a cron schedule kept by the server."""
