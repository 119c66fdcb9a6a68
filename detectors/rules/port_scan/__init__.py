"""port scan rules."""
