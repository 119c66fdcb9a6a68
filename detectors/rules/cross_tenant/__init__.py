"""cross tenant rules."""

__all__: list[str] = []
