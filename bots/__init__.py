"""Platform adapters (console, Telegram, Discord) and the `haven` command line."""
