"""vm escape rules."""

__all__: list[str] = []
