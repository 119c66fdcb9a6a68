"""dos rules."""
