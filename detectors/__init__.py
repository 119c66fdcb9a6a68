"""Detectors: pure Python over canonical events. Never imports PyFlink, Kafka or Elasticsearch."""
