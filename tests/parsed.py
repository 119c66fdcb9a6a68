"""What a parser wrote to a ``ListOutput``, in the shapes the parser tests read."""

from __future__ import annotations

from ingest.parsers import ListOutput
from ingest.schema import FlowEvent


def flows(out: ListOutput) -> list[FlowEvent]:
    """The flow events written, asserting that nothing but flows was."""
    events = [e for e in out.events if isinstance(e, FlowEvent)]
    assert len(events) == len(out.events), "the parser wrote events other than flows"
    return events
