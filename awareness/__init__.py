"""Situational awareness over the alert stream: alerts grouped into incidents, per-tenant and
cloud-wide threat levels, and early warnings from per-tenant forecasts.

Plain Python on lists of alert documents, like ``detectors/``: the Flink job (``streams/``) keeps
these objects in keyed state and feeds them; nothing here knows Flink, Kafka or Elasticsearch.
"""
