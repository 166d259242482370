"""Who is calling: logins, session tokens and API keys, resolved into a Principal."""
