"""Prometheus metrics exposed at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "mayhold_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)

# Buckets resolve the pre-trade range (sub-millisecond to tens of ms) as well as bulk calls.
HTTP_LATENCY = Histogram(
    "mayhold_http_request_duration_seconds",
    "Time from request received to response body sent, by route template and method.",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
