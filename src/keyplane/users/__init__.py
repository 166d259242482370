"""Users of a tenant, managed by its tenant admins."""
