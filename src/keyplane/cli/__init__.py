"""The ``keyplane`` command."""
