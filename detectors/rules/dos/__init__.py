"""dos rules."""

__all__: list[str] = []
