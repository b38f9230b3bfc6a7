"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("gpuledger_api_requests", "API requests by operation and status",
                                ["operation", "status"], registry=self.registry)
        self.latency = Histogram("gpuledger_api_request_seconds", "API request latency by operation", ["operation"],
                                 registry=self.registry,
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.auth_failures = Counter("gpuledger_api_auth_failures", "requests with an invalid bearer token",
                                     registry=self.registry)

    def observe(self, operation: str, status: int, seconds: float) -> None:
        self.requests.labels(operation, str(status)).inc()
        self.latency.labels(operation).observe(seconds)
