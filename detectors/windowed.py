"""Stateful detectors over the events of one key (entity) in a window.

A subclass implements ``observe_batch`` (usually: filter, build the key, ``self.state(ts, key)``,
update the state), ``new_state``, ``finish_key`` and, for sliding windows, ``merge``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from detectors.base import Detector, Finding
from detectors.windows import Window

__all__ = ["WindowedDetector"]

S = TypeVar("S")


class WindowedDetector(Detector, Generic[S]):
    @abstractmethod
    def new_state(self, key: Hashable) -> S: ...

    @abstractmethod
    def finish_key(self, window: Window, key: Hashable, state: S) -> Finding | None: ...

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        out = []
        for key, st in states.items():
            f = self.finish_key(window, key, st)
            if f is not None:
                out.append(f)
        return out
