"""brute force rules."""

__all__: list[str] = []
