"""Prometheus metrics of one server instance (its own registry, exposed at /metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class Metrics:
    """Counters the broker and transports update; `render` gives the text exposition format."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.connections = Gauge(
            "agentchat_connections", "Open client connections", ["transport"], registry=r
        )
        self.sessions = Gauge(
            "agentchat_sessions", "Sessions, connected or inside the resume window", registry=r
        )
        self.channels = Gauge("agentchat_channels", "Channels with local state on this node", registry=r)
        self.publishes = Counter(
            "agentchat_publishes_total", "Messages accepted for publish", ["lane"], registry=r
        )
        # The hot paths' labelled children, looked up once.
        self.publishes_durable = self.publishes.labels("durable")
        self.publishes_ephemeral = self.publishes.labels("ephemeral")
        self.deliveries = Counter("agentchat_deliveries_total", "Events queued to subscribers", registry=r)
        self.outbox_drops = Counter(
            "agentchat_outbox_drops_total", "Events dropped because an outbox overflowed", registry=r
        )
        self.slow_consumers = Counter(
            "agentchat_slow_consumer_disconnects_total", "Connections closed as slow consumers", registry=r
        )
        self.errors = Counter("agentchat_errors_total", "Error replies sent", ["code"], registry=r)
        self.commit_seconds = Histogram(
            "agentchat_commit_seconds",
            "Store group-commit latency",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.commit_batch = Histogram(
            "agentchat_commit_batch_size",
            "Operations per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.streams_open = Gauge("agentchat_streams_open", "Open token streams", registry=r)
        self.streams_ended = Counter(
            "agentchat_streams_ended_total", "Ended token streams", ["status"], registry=r
        )
        self.stream_mismatch = Counter(
            "agentchat_stream_mismatch_total",
            "Streams whose declared final content differed from the assembled chunks",
            registry=r,
        )
        self.store_writes = Counter("agentchat_store_writes_total", "Store write operations", registry=r)
        self.store_reads = Counter(
            "agentchat_store_reads_total",
            "Store reads on behalf of readers: a reader's own fill, or one repair shared by a channel",
            ["reason"],
            registry=r,
        )
        for reason in ("fill", "repair"):
            self.store_reads.labels(reason)  # listed at 0 from the start

    def count_bytes_out(self, source: Callable[[], int]) -> None:
        """Expose `agentchat_bytes_out_total`, read from `source` at scrape time: outboxes count
        their bytes as plain integers, so the write path pays no metric lock per write."""
        self.registry.register(_BytesOut(source))

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class _BytesOut(Collector):
    def __init__(self, source: Callable[[], int]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        help_text = "Bytes written to client transports (frames, events, replies)"
        yield CounterMetricFamily("agentchat_bytes_out", help_text, self.source())
