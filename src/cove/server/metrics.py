"""Prometheus metrics for `/metrics`: requests, tokens, latency, queue depth, loaded models."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..engine.scheduler import Scheduler

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TOKEN_GAP_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


class SchedulerCollector(Collector):
    """Reads queue depth and loaded models at scrape time, so they are never stale."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = GaugeMetricFamily("cove_queue_depth", "Requests waiting for a model slot")
        queue.add_metric([], self.scheduler.queue_depth())
        runners = self.scheduler.loaded()
        loaded = GaugeMetricFamily("cove_loaded_models", "Models held in memory")
        loaded.add_metric([], len(runners))
        memory = GaugeMetricFamily(
            "cove_model_memory_bytes", "Estimated memory of each loaded model", labels=["model"]
        )
        healthy = GaugeMetricFamily(
            "cove_remote_replica_healthy",
            "1 while a remote model's upstream replica answers its health checks, else 0",
            labels=["model", "replica"],
        )
        for runner in runners:
            memory.add_metric([runner.spec.name], runner.size)
            describe = getattr(runner.model, "describe", None) if runner.spec.remote else None
            for replica in describe() if describe else ():
                healthy.add_metric(
                    [runner.spec.name, str(replica["name"])], 1.0 if replica["healthy"] else 0.0
                )
        yield from (queue, loaded, memory, healthy)


class Metrics:
    """One registry per server, so tests can run several servers in one process."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cove_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.tokens = Counter(
            "cove_tokens", "Tokens processed", ["model", "direction"], registry=self.registry
        )
        self.ttft = Histogram(
            "cove_time_to_first_token_seconds",
            "Time from request to first generated token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.token_gap = Histogram(
            "cove_inter_token_seconds",
            "Time between streamed tokens",
            ["model"],
            buckets=TOKEN_GAP_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(SchedulerCollector(scheduler))

    def render(self) -> bytes:
        return generate_latest(self.registry)
