"""port scan rules."""

__all__: list[str] = []
