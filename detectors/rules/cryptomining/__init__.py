"""cryptomining rules."""

__all__: list[str] = []
