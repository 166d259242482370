"""Keyplane: self-hosted, multi-tenant API key management."""

__version__ = "0.1.0"
