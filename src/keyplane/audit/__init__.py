"""The audit log: who did what to which key or user, from where, with what outcome."""
