"""cross tenant rules."""
