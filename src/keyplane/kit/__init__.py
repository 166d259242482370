"""Plumbing shared by the feature packages."""
