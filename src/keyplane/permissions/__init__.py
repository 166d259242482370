"""A tenant's own permission names (``invoices.read``) and the roles that bundle them."""
