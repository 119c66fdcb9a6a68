"""c2 rules."""

__all__: list[str] = []
