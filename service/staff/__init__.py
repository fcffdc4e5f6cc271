"""Staff accounts for the desk: roles and permissions, password hashes, sessions, audit log."""
