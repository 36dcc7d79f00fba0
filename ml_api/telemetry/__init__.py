"""Telemetry: structured events, Prometheus metrics, request statistics, the Elasticsearch setup."""
