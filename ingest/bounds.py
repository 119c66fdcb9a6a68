"""The canonical event's bounds, checked on what parsers emit (they build events without a decoder).

The bounds are declared once, in the types of ``ingest.schema`` (numeric ranges, lengths, literal
values) and its ``SHAPES`` (addresses, tenant ids, protocols). ``violations`` checks a list of
events against them. Nearly every list is all good, and it is checked per field across the whole
list with C-level builtins (``min``/``max``/``set`` over the field's column of values), since a
Python test per field and event, or a JSON round trip, costs a third of the parsing itself; a text
value is matched against its shape once and remembered. Only a list that fails is checked event
by event, against every field's full type, to name the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from itertools import chain
from operator import attrgetter
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from ingest.schema import SHAPES, AuditEvent, AuthEvent, Event, FlowEvent, ProcessEvent

__all__ = ["violations"]

_GOOD_CACHE_MAX: Final = 65536
_NONE: Final = type(None)


def _values(names: list[str]) -> Callable[[Iterable[Event]], list[Any]]:
    """The values of ``names`` across events, flattened, in one C-level pass."""
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda events: list(map(one, events))
    many = attrgetter(*names)
    return lambda events: list(chain.from_iterable(map(many, events)))


class _ClassBounds:
    """The checks of one event class, derived from its declared types: integer ranges, literal
    values and text shapes. Plain text fields are left to the parsers, which only ever build them
    from text; the shaped ones (addresses, tenant ids, protocols) are checked here."""

    def __init__(self, cls: type[Event]) -> None:
        names: list[str] = []
        self.int_bounds: list[tuple[int, int]] = []
        self.nullable_ints = False
        self.literals: list[tuple[Callable[[Iterable[Event]], list[Any]], frozenset[Any]]] = []
        # Each shaped field with the values already matched against its shape (a set per field:
        # a value good as a tenant id, "999", is no protocol).
        self.shapes: list[tuple[Callable[[Iterable[Event]], list[Any]], re.Pattern[str], set[str]]] = []
        self.one_literals: list[tuple[Callable[[Event], Any], frozenset[Any]]] = []
        self.one_shapes: list[tuple[Callable[[Event], Any], re.Pattern[str], set[str]]] = []
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        for field in info.fields:
            kind, nullable = field.type, False
            if isinstance(kind, mi.UnionType):
                others = [t for t in kind.types if not isinstance(t, mi.NoneType)]
                kind, nullable = others[0], True
            if isinstance(kind, mi.IntType):
                lo = kind.ge if kind.ge is not None else -(2**63)
                hi = kind.le if kind.le is not None else (kind.lt - 1 if kind.lt is not None else 2**63 - 1)
                names.append(field.name)
                self.int_bounds.append((lo, hi))
                self.nullable_ints |= nullable
            elif isinstance(kind, mi.LiteralType):
                self.literals.append((_values([field.name]), frozenset(kind.values)))
                self.one_literals.append((attrgetter(field.name), frozenset(kind.values)))
            if field.name in SHAPES:
                good: set[str] = set()
                pattern = re.compile(SHAPES[field.name])
                self.shapes.append((_values([field.name]), pattern, good))
                self.one_shapes.append((attrgetter(field.name), pattern, good))
        row = attrgetter(*names)  # a tuple, except for a class with one integer field
        self.int_rows: Callable[[Event], tuple[Any, ...]] = row if len(names) > 1 else lambda e: (row(e),)

    def all_good(self, events: list[Event]) -> bool:
        # One row of integers per event, turned into one column per field: a few C passes each.
        columns = list(zip(*map(self.int_rows, events), strict=True))
        for column, (lo, hi) in zip(columns, self.int_bounds, strict=True):
            types = set(map(type, column))
            if types != {int}:
                if not (self.nullable_ints and types <= {int, _NONE}):
                    return False
                column = tuple(v for v in column if v is not None)
                if not column:
                    continue
            if min(column) < lo or max(column) > hi:
                return False
        for values, allowed in self.literals:
            if not set(values(events)) <= allowed:
                return False
        return self._shapes_good(events)

    def one_good(self, event: Event) -> bool:
        """``all_good`` for a single event (formats that emit one at a time): plain comparisons."""
        for value, (lo, hi) in zip(self.int_rows(event), self.int_bounds, strict=True):
            if type(value) is not int:
                if value is None and self.nullable_ints:
                    continue
                return False
            if value < lo or value > hi:
                return False
        for get, allowed in self.one_literals:
            if get(event) not in allowed:
                return False
        return all(_shaped(get(event), pattern, good) for get, pattern, good in self.one_shapes)

    def _shapes_good(self, events: list[Event]) -> bool:
        return all(
            _shaped(value, pattern, good)
            for values, pattern, good in self.shapes
            for value in set(values(events)) - good
        )

    def reason(self, event: Event) -> str | None:
        """The first field of ``event`` that breaks its type, bound or shape, in our words."""
        kind = event.kind_name()
        for field in msgspec.structs.fields(type(event)):
            value = getattr(event, field.name)
            try:
                msgspec.convert(value, field.type)
                bad = (
                    field.name in SHAPES and value is not None and re.match(SHAPES[field.name], value) is None
                )
            except (msgspec.ValidationError, TypeError, ValueError, OverflowError):
                bad = True
            if bad:
                shown = repr(value)
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                return f"{kind} event field {field.name} out of bounds or of the wrong type: {shown}"
        try:
            _encode(event)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError):
            return f"{kind} event holds a value JSON cannot carry (in extra)"
        return None


def _shaped(value: Any, pattern: re.Pattern[str], good: set[str]) -> bool:
    """Whether ``value`` (None: unset) has its field's shape; a match is remembered in ``good``."""
    if value is None or value in good:
        return True
    if not isinstance(value, str) or pattern.match(value) is None:
        return False
    if len(good) >= _GOOD_CACHE_MAX:
        good.clear()
    good.add(value)
    return True


_encode: Final = msgspec.json.Encoder().encode
_BY_CLASS: Final[dict[type, _ClassBounds]] = {
    cls: _ClassBounds(cls) for cls in (FlowEvent, ProcessEvent, AuditEvent, AuthEvent)
}


def violations(events: list[Event]) -> list[tuple[int, str]]:
    """(index, reason) of each event in ``events`` that breaks the canonical schema's bounds."""
    if len(events) == 1:
        one = _BY_CLASS.get(type(events[0]))
        if one is not None and one.one_good(events[0]):
            return []
        classes = set()
    else:
        classes = set(map(type, events))
    if len(classes) == 1:
        bounds = _BY_CLASS.get(type(events[0]))
        if bounds is not None and bounds.all_good(events):
            return []
    elif classes and all(
        cls in _BY_CLASS and _BY_CLASS[cls].all_good([e for e in events if type(e) is cls]) for cls in classes
    ):
        return []
    bad: list[tuple[int, str]] = []
    for i, event in enumerate(events):
        checker = _BY_CLASS.get(type(event))
        reason = checker.reason(event) if checker is not None else "not a canonical event"
        if reason is not None:
            bad.append((i, reason))
    return bad
