"""brute force rules."""
