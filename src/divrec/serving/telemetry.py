"""What ``divrec serve`` tells its operators: Prometheus metrics (``GET /metrics``) and request logs.

Each app owns a ``CollectorRegistry`` (never prometheus-client's global one), so two apps in one process (tests, a
reload that rebuilds the app) never share or collide on counters. Logs never carry a raw user id unless
``log_user_ids=true``: ``user_ref`` turns one into a salted hash that is stable within one server process (requests
of one user can be followed in the log) but not across restarts or servers.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("divrec.serve")

# seconds; fine steps where the latency targets are (p50 <= 5 ms, p99 <= 20 ms), coarse beyond
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OTHER = "other"  # the endpoint label of any path the app does not serve (bounded label cardinality)


class Telemetry:
    """The app's metrics: requests and latency per endpoint, batch sizes, feedback events, reloads."""

    def __init__(self, endpoints: set[str], log_user_ids: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.endpoints = endpoints
        self.log_user_ids = log_user_ids
        self._salt = secrets.token_bytes(16)
        self.requests = Counter(
            "divrec_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "divrec_request_latency_seconds", "Time from request start to the last response byte", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "divrec_batch_size", "Requests scored together by one Recommender call", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.feedback_events = Counter(
            "divrec_feedback_events", "Feedback events committed to the store", registry=self.registry
        )
        self.reloads = Counter("divrec_reloads", "Model reloads by outcome", ["outcome"], registry=self.registry)
        self.model_loaded_at = Gauge(
            "divrec_model_loaded_timestamp_seconds", "When the served model was loaded", registry=self.registry
        )

    def endpoint(self, path: str) -> str:
        return path if path in self.endpoints else OTHER

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one finished request and record its latency; log it at DEBUG (never its body)."""
        endpoint = self.endpoint(path)
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %d %.2f ms", endpoint, status, seconds * 1e3)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def user_ref(self, user: str | None) -> str:
        """How logs name a user: the raw id with ``log_user_ids``, else ``user#<salted hash>``."""
        if user is None:
            return "-"
        if self.log_user_ids:
            return repr(user)
        return "user#" + hashlib.blake2b(user.encode(), key=self._salt, digest_size=6).hexdigest()


def now() -> float:
    """The clock latencies are measured with."""
    return time.perf_counter()
