"""Prometheus metrics of one server process (exposed on ``GET /metrics``).

Requests by kind and status, request latency, promises and tasks by state, open SSE connections and
what their bounds refused, messages sent and dropped, HTTP push outcomes, timer lateness, schedule
firings and every configured bound (``troth_limit{name}``). Each server owns its registry, so several
servers can live in one process (tests, local mode).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "troth_requests", "Protocol requests by kind and status", ["kind", "status"], registry=r
        )
        self.latency = Histogram(
            "troth_request_duration_seconds",
            "Protocol request latency",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.promises = Gauge("troth_promises", "Promises by state", ["state"], registry=r)
        self.tasks = Gauge("troth_tasks", "Tasks by state", ["state"], registry=r)
        self.connections = Gauge("troth_sse_connections", "Open SSE (poll) connections", registry=r)
        self.sse_refused = Counter(
            "troth_sse_refused",
            "SSE connections refused at a bound (total, group or pid)",
            ["bound"],
            registry=r,
        )
        self.sse_replaced = Counter(
            "troth_sse_replaced",
            "SSE streams replaced by a newer stream of the same group and pid",
            registry=r,
        )
        self.sse_overflows = Counter(
            "troth_sse_overflows",
            "SSE streams closed because their buffer was full (slow consumers)",
            registry=r,
        )
        self.sse_stalls = Counter(
            "troth_sse_stalls",
            "SSE streams closed because their socket took nothing for a minute while messages waited",
            registry=r,
        )
        self.sse_buffered = Gauge(
            "troth_sse_buffered_bytes", "Bytes buffered for SSE streams and not yet written", registry=r
        )
        self.waiting = Gauge(
            "troth_executes_waiting",
            "Executes kept for groups that have no stream, or no room in one",
            registry=r,
        )
        self.limits = Gauge(
            "troth_limit", "Configured bounds (docs/operations/limits.md)", ["name"], registry=r
        )
        self.messages = Counter(
            "troth_messages",
            "Messages by kind and outcome (sent or dropped)",
            ["kind", "outcome"],
            registry=r,
        )
        self.deliveries = Counter(
            "troth_http_push", "HTTP push deliveries by outcome", ["status"], registry=r
        )
        self.lateness = Histogram(
            "troth_timer_lateness_seconds",
            "How late timers (timeouts, retries, leases, schedule ticks) fired",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.reclaimed = Counter(
            "troth_reclaimed",
            "What retention deleted: settled workflow trees and their promises",
            ["kind"],
            registry=r,
        )
        self.schedule_promises = Counter(
            "troth_schedule_promises", "Promises created by schedule firings", registry=r
        )
        self.store_stats = Gauge(
            "troth_store",
            "Store measures of this process: pool_in_use, pool_open (PostgreSQL connections), "
            "retries_conflict and retries_unavailable (units run again since start)",
            ["measure"],
            registry=r,
        )
        self.refused = Counter(
            "troth_refused",
            "Requests and connections refused before the core, by reason (unauthorized, forbidden, host, "
            "origin, content_type, header_too_large, header_timeout, body_timeout, sse_per_principal)",
            ["reason"],
            registry=r,
        )
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def observe_request(self, kind: str, status: int, seconds: float) -> None:
        key = (kind, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(kind, str(status))
        counter.inc()
        hist = self._latency_children.get(kind)
        if hist is None:
            hist = self._latency_children[kind] = self.latency.labels(kind)
        hist.observe(seconds)

    def set_counts(self, counts: dict[str, dict[str, int]]) -> None:
        for state in ("pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout"):
            self.promises.labels(state).set(counts.get("promises", {}).get(state, 0))
        for state in ("pending", "acquired", "suspended", "halted", "fulfilled"):
            self.tasks.labels(state).set(counts.get("tasks", {}).get(state, 0))

    def set_store_stats(self, stats: dict[str, float]) -> None:
        for name, value in stats.items():
            self.store_stats.labels(name).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
