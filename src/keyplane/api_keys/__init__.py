"""API keys: create, list, edit, revoke, re-activate, delete."""
