"""cryptomining rules."""
