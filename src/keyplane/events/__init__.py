"""What happened to keys and users, told to whoever listens: webhooks (an outbox written in
the change's transaction) and the people concerned (notifications)."""
