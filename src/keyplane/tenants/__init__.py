"""Tenants and their resource limits."""
