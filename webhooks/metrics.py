"""A few Prometheus counters in text exposition format, without a client library."""
from __future__ import annotations

import threading
from collections import Counter


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.seconds: Counter[tuple[str, str]] = Counter()
        self.events: Counter[tuple[str, str]] = Counter()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            self.seconds[(method, route)] += seconds

    def count(self, name: str, label: str = "") -> None:
        with self._lock:
            self.events[(name, label)] += 1

    def render(self) -> str:
        lines = ["# HELP fatoura_http_requests_total HTTP requests by route and status.",
                 "# TYPE fatoura_http_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(f'fatoura_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
            lines += ["# HELP fatoura_http_request_seconds_total Time spent answering, by route.",
                      "# TYPE fatoura_http_request_seconds_total counter"]
            for (method, route), s in sorted(self.seconds.items()):
                lines.append(f'fatoura_http_request_seconds_total{{method="{method}",route="{route}"}} {s:.6f}')
            lines += ["# HELP fatoura_events_total Domain events (messages, payments, ...).",
                      "# TYPE fatoura_events_total counter"]
            for (name, label), n in sorted(self.events.items()):
                lines.append(f'fatoura_events_total{{event="{name}",label="{label}"}} {n}')
        return "\n".join(lines) + "\n"


METRICS = Metrics()
