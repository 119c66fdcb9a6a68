"""The envelope of a CloudWatch Logs subscription delivery, for any parser whose records arrive that
way (CloudTrail sent to a log group, VPC Flow Logs published to CloudWatch Logs, ...).

A subscription filter forwards the log events of a log group to Kinesis, Firehose or Lambda as
described in "Log group-level subscription filters" of the CloudWatch Logs user guide
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html). Each delivery
is one JSON document, gzip-compressed on the wire; the forwarder that lands it here decompresses it:

    {"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "aws-cloudtrail-logs",
     "logStream": "111122223333_CloudTrail_us-east-1", "subscriptionFilters": ["to-kafka"],
     "logEvents": [{"id": "3195...", "timestamp": 1709287200000, "message": "..."}, ...]}

A ``CONTROL_MESSAGE`` document only checks that the destination is reachable and carries no log
data. This module knows the envelope, not what the messages say: the parser decides what a message
is (a CloudTrail record as JSON text, a flow log line) and reads it within its own limits.

``is_delivery`` tells a delivery from a record of the format itself (no record has a
``messageType``); ``open_delivery`` checks the document and raises ``DeliveryRefused`` for the whole
of it; ``read_log_event`` checks one entry of ``logEvents`` and raises it for that entry only, so a
parser can send one malformed entry to the DLQ and still read the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ingest.parsers.flowutil import clip

__all__ = [
    "CONTROL_MESSAGE",
    "DATA_MESSAGE",
    "ENVELOPE",
    "Delivery",
    "DeliveryRefused",
    "LogEvent",
    "is_delivery",
    "open_delivery",
    "read_log_event",
]

DATA_MESSAGE: Final = "DATA_MESSAGE"
CONTROL_MESSAGE: Final = "CONTROL_MESSAGE"
ENVELOPE: Final = "CloudWatch Logs subscription document"  # how DLQ reasons name it
_NAME_MAX: Final = 512  # AWS's limit on a log group or stream name: a longer one is not AWS's


class DeliveryRefused(ValueError):
    """A delivery, or one of its log events, is not shaped as CloudWatch Logs writes it; the
    message is the DLQ reason."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A checked document. ``entries`` are its ``logEvents`` as decoded, to be read one by one with
    ``read_log_event``; a control message has none. The log group and stream are None unless they
    look like AWS's names (no parser needs them to read a record, so a bad one costs nothing)."""

    control: bool
    log_group: str | None
    log_stream: str | None  # for VPC Flow Logs, the network interface ("eni-...-all")
    entries: list[Any]


@dataclass(frozen=True, slots=True)
class LogEvent:
    message: str  # the record as its source wrote it, still to be parsed
    timestamp: int | None  # epoch ms of the log event, None when the entry has none


def is_delivery(value: object) -> bool:
    """Whether a decoded JSON value claims to be a delivery, well formed or not."""
    return isinstance(value, dict) and "messageType" in value


def open_delivery(document: dict[str, Any]) -> Delivery:
    """The delivery ``document`` holds; ``DeliveryRefused`` when it is not one."""
    kind = document.get("messageType")
    log_group = _name(document.get("logGroup"))
    log_stream = _name(document.get("logStream"))
    if kind == CONTROL_MESSAGE:
        return Delivery(True, log_group, log_stream, [])
    if kind != DATA_MESSAGE:
        raise DeliveryRefused(
            f"{ENVELOPE}: messageType {clip(kind)} is neither DATA_MESSAGE nor CONTROL_MESSAGE"
        )
    entries = document.get("logEvents")
    if not isinstance(entries, list):
        raise DeliveryRefused(f"{ENVELOPE}: DATA_MESSAGE without a logEvents list")
    return Delivery(False, log_group, log_stream, entries)


def read_log_event(entry: Any, index: int) -> LogEvent:
    """``logEvents[index]``; ``DeliveryRefused`` when it is malformed."""
    message = entry.get("message") if isinstance(entry, dict) else None
    if type(message) is not str:
        raise DeliveryRefused(f"{ENVELOPE}: logEvents[{index}] has no message string")
    timestamp = entry.get("timestamp")
    if timestamp is not None and (type(timestamp) is not int or timestamp < 0):  # True is no time
        raise DeliveryRefused(f"{ENVELOPE}: logEvents[{index}] timestamp {clip(timestamp)} is not epoch ms")
    return LogEvent(message, timestamp)


def _name(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _NAME_MAX else None
