"""Prometheus text-format metrics, written by hand (no extra dependency).

Exposed at ``GET /metrics``: ``bertkit_requests_total{route,status}``,
``bertkit_request_seconds{route}`` and ``bertkit_batch_size{batcher}`` (requests merged into
one model call) histograms, ``bertkit_batch_texts_total{batcher}``, and the
``bertkit_queue_depth{batcher}`` gauge.
"""

from __future__ import annotations

import threading
from collections import defaultdict

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)  # per bucket, not cumulative
        self.total, self.n = 0.0, 0

    def observe(self, value: float) -> None:
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
                break
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str) -> list:
        out, running = [], 0
        sep = "," if labels else ""
        for edge, c in zip(self.buckets, self.counts):
            running += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{edge:g}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        brace = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{brace} {self.total:.6f}", f"{name}_count{brace} {self.n}"]
        return out


def _esc(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters, histograms and gauges of one app (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = defaultdict(int)  # (route, status) -> count
        self.request_seconds: dict = {}  # route -> Histogram
        self.batch_size: dict = {}  # batcher -> Histogram
        self.batch_texts = defaultdict(int)
        self.queue_depth: dict = {}  # batcher -> callable giving the depth now

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, int(status))] += 1
            self.request_seconds.setdefault(route, Histogram(SECONDS_BUCKETS)).observe(seconds)

    def observe_batch(self, batcher: str, n_requests: int, n_texts: int) -> None:
        with self._lock:
            self.batch_size.setdefault(batcher, Histogram(BATCH_BUCKETS)).observe(n_requests)
            self.batch_texts[batcher] += n_texts

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            out = ["# HELP bertkit_requests_total HTTP requests by route and status.",
                   "# TYPE bertkit_requests_total counter"]
            for (route, status), n in sorted(self.requests.items()):
                out.append(f'bertkit_requests_total{{route="{_esc(route)}",status="{status}"}} {n}')
            out += ["# HELP bertkit_request_seconds Time to answer a request.",
                    "# TYPE bertkit_request_seconds histogram"]
            for route, h in sorted(self.request_seconds.items()):
                out += h.lines("bertkit_request_seconds", f'route="{_esc(route)}"')
            out += ["# HELP bertkit_batch_size Requests merged into one model call.",
                    "# TYPE bertkit_batch_size histogram"]
            for name, h in sorted(self.batch_size.items()):
                out += h.lines("bertkit_batch_size", f'batcher="{_esc(name)}"')
            out += ["# HELP bertkit_batch_texts_total Texts run through the model by batchers.",
                    "# TYPE bertkit_batch_texts_total counter"]
            for name, n in sorted(self.batch_texts.items()):
                out.append(f'bertkit_batch_texts_total{{batcher="{_esc(name)}"}} {n}')
            depth = dict(self.queue_depth)
        out += ["# HELP bertkit_queue_depth Requests waiting for a model call.",
                "# TYPE bertkit_queue_depth gauge"]
        for name, get in sorted(depth.items()):
            out.append(f'bertkit_queue_depth{{batcher="{_esc(name)}"}} {int(get())}')
        return "\n".join(out) + "\n"
