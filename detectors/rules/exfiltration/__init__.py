"""exfiltration rules."""

__all__: list[str] = []
