"""Live telemetry for the latency benchmark: every event sent when the wall clock reaches its event
time, at rates up to the job's own sustained rate.

The simulator makes ~30-70k events/s per core, about what the job consumes on the same two
cores, so it cannot feed a loaded job live. The events are therefore made and encoded before the
run into a file of Kafka records (topic, key, value, timestamp, in event-time order), and the
sender only reads them back and hands them to the producer, configured as ``ssa ingest``'s
(``ingest.producer.confluent_config``). The simulation is planned to start once encoding is done:
if encoding overruns the plan, the sender starts behind event time, and ``max_behind_s`` says so.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from infra.settings import Settings
from ingest.producer import confluent_config, event_key
from ingest.schema import encode_event
from streams.kafka_target import kafka_target

__all__ = ["Replay", "encode_records", "read_records", "send_in_real_time"]

_CHUNK = 10_000
_LENGTH = struct.Struct(">I")
Record = tuple[int, str, str | None, bytes]  # (timestamp ms, topic, key, value)


def encode_records(settings: Settings, events: Iterator[Any], path: Path) -> int:
    """Write ``events`` as Kafka records to ``path`` in length-prefixed msgpack chunks."""
    topics = settings.telemetry_topics
    encoder = msgspec.msgpack.Encoder()
    count = 0
    chunk: list[Record] = []
    with path.open("wb") as out:
        for ev in events:
            chunk.append((ev.ts, topics[ev.__struct_config__.tag], event_key(ev), encode_event(ev)))
            if len(chunk) >= _CHUNK:
                count += _write_chunk(out, encoder, chunk)
                chunk = []
        count += _write_chunk(out, encoder, chunk)
    return count


def _write_chunk(out: Any, encoder: msgspec.msgpack.Encoder, chunk: list[Record]) -> int:
    if chunk:
        data = encoder.encode(chunk)
        out.write(_LENGTH.pack(len(data)) + data)
    return len(chunk)


def read_records(path: Path) -> Iterator[Record]:
    decoder = msgspec.msgpack.Decoder(list[Record])
    with path.open("rb") as src:
        while header := src.read(_LENGTH.size):
            yield from decoder.decode(src.read(_LENGTH.unpack(header)[0]))


@dataclass
class Replay:
    complete_at: dict[int, float]  # per second of event time, the wall time its first event was sent
    sent: int
    wall_s: float  # from the first record's time (or the sender's start, if later) to the last send
    max_behind_s: float  # how far the sender fell behind event time at worst
    delivery_failures: int
    first_delivery_error: str | None


def send_in_real_time(settings: Settings, path: Path) -> Replay:
    """Send the records of ``path`` each when the wall clock reaches its timestamp. The input of
    every window ending at a second was complete once that second's first record was sent."""
    import confluent_kafka

    failures: list[str] = []  # librdkafka's error of each record it could not deliver

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    conf = {**confluent_config(kafka_target(settings)), "on_delivery": on_delivery,
            "delivery.report.only.error": True}  # fmt: skip
    producer = confluent_kafka.Producer(conf)
    first_sent: dict[int, float] = {}
    sent, behind, started, first_ts = 0, 0.0, time.time(), None
    for ts, topic, key, value in read_records(path):
        if first_ts is None:
            first_ts = ts
        wait = ts / 1000 - time.time()
        if wait > 0:
            time.sleep(wait)
        elif -wait > behind:
            behind = -wait
        while True:
            try:
                producer.produce(topic, value, key, timestamp=ts)
                break
            except BufferError:  # local queue full: let librdkafka drain it, then send again
                producer.poll(0.05)
        first_sent.setdefault(ts - ts % 1000, time.time())
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
    last = time.time()
    producer.flush(120)
    start = max(started, (first_ts or 0) / 1000)
    return Replay(first_sent, sent, last - start, behind, len(failures), failures[0] if failures else None)
