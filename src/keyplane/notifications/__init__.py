"""Mail to the people concerned: expiry notices, changes an admin made to their keys,
the inactivity sweep, and tenant admins' daily digest."""
