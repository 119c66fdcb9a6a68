"""exfiltration rules."""
