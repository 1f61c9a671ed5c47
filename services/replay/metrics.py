"""Prometheus metrics of one replay app (its own registry, so apps in one process don't mix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ReplayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inserted = Counter(
            "rlfleet_replay_inserted_items", "Items inserted.", ["table"], registry=self.registry
        )
        self.sampled = Counter(
            "rlfleet_replay_sampled_items", "Items sampled.", ["table"], registry=self.registry
        )
        self.waits = Counter(
            "rlfleet_replay_rate_limiter_waits",
            "Requests the rate limiter made wait at least once.",
            ["table", "op"],
            registry=self.registry,
        )
        self.timeouts = Counter(
            "rlfleet_replay_rate_limiter_timeouts",
            "Requests answered 429 because the rate limiter did not admit them in time.",
            ["table", "op"],
            registry=self.registry,
        )
        self.size = Gauge(
            "rlfleet_replay_table_size", "Items in the table.", ["table"], registry=self.registry
        )
        self.latency = Histogram(
            "rlfleet_replay_request_seconds",
            "Request latency by endpoint.",
            ["method", "endpoint"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
            registry=self.registry,
        )
