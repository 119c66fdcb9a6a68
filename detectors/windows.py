"""Event-time windows aligned to epoch multiples.

A tumbling window of size S covers ``[k*S, (k+1)*S)``. A sliding window of size S and slide L
(S a multiple of L) covers ``[k*L, k*L + S)``; it is built from *panes* of size L so each event
is added once, and a window is the merge of its S/L panes. Because every boundary is a multiple
of the size (or slide) counted from the epoch, a Flink tumbling window whose size is a multiple
of a detector's window sees exactly the detector windows that a long-running stream would see.
A window closes when the watermark reaches its end.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Window", "WindowSpec"]


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int


@dataclass(frozen=True)
class WindowSpec:
    size_ms: int
    slide_ms: int = 0  # 0: tumbling

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ValueError(f"window size must be positive, got {self.size_ms}")
        if self.slide_ms < 0 or (self.slide_ms and self.size_ms % self.slide_ms):
            raise ValueError(f"slide {self.slide_ms} must divide the window size {self.size_ms}")
        if self.slide_ms == self.size_ms:
            object.__setattr__(self, "slide_ms", 0)

    @property
    def sliding(self) -> bool:
        return self.slide_ms != 0

    @property
    def pane_ms(self) -> int:
        return self.slide_ms or self.size_ms

    def pane_start(self, ts: int) -> int:
        return ts - ts % self.pane_ms

    def windows_of(self, ts: int) -> list[Window]:
        """Every window that contains ``ts`` (one for tumbling, size/slide for sliding)."""
        step = self.pane_ms
        last = ts - ts % step
        first = last - self.size_ms + step
        return [Window(s, s + self.size_ms) for s in range(first, last + 1, step)]

    def fits_in(self, batch_ms: int) -> bool:
        """True when every window lies inside one epoch-aligned batch window of ``batch_ms``."""
        return not self.sliding and batch_ms % self.size_ms == 0

    def describe(self) -> str:
        if self.sliding:
            return f"sliding {self.size_ms} ms every {self.slide_ms} ms"
        return f"tumbling {self.size_ms} ms"
