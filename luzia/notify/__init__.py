"""luzia-notify: tells people about jobs and the fleet through Apprise targets (Slack, Discord,
Telegram, ntfy, email, a JSON webhook, ...). Its own process beside the broker, fed by the
broker's events; docs/NOTIFY.md says what it promises."""
