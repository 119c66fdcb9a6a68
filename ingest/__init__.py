"""Telemetry in: canonical event schema, parsers, tenant registry, producer with DLQ, simulator."""
