"""Tenant API key policies (Tenant Settings > API Key Policy)."""
