"""Moving bytes and running commands (this machine now; SSH hosts later)."""
