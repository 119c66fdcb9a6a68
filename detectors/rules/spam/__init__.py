"""spam rules."""

__all__: list[str] = []
