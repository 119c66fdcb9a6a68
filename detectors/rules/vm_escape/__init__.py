"""vm escape rules."""
