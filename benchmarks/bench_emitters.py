"""Network emitters: the cost of one emit, and what a dead backend does to predict latency.

Run: ``python benchmarks/bench_emitters.py [--quick]``

1. One emit of a 1,000-series snapshot to each emitter, against loopback sinks that read and
   discard (a UDP socket, TCP listeners): the first emit (names rendered and cached) and the
   median of the following ones; datagrams/writes and bytes per emit. Prometheus: the render at
   emit, and one scrape of the endpoint.
2. Predict latency p50/p99 with a monitor flushing every 0.25 s to: no emitter; StatsD on a closed
   UDP port; Graphite on a closed TCP port; Graphite black-holed (accepts, never reads); StatsD
   whose host name takes 0.5 s to fail to resolve. All in the same run, interleaved in rounds;
   medians over rounds, and the ratio to "no emitter" (target <= 1.05).

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import logging
import platform
import socket
import statistics
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlmon
import mlmon.emitters.statsd as statsd_mod
from mlmon.emitters.graphite import GraphiteEmitter
from mlmon.emitters.prometheus import PrometheusEmitter
from mlmon.emitters.statsd import StatsdEmitter
from mlmon.snapshot import CATALOG, Sample, Snapshot

N_SERIES = 1000


def identity(x: float) -> float:
    return x


def big_snapshot(step: int) -> Snapshot:
    """1,000 series: every catalog metric, then per-feature metrics for as many features as fit."""
    samples: list[Sample] = []
    feature_metrics = [n for n, info in CATALOG.items() if info.labels == ("feature",)]
    for name, info in CATALOG.items():
        if info.labels == ("feature",):
            continue
        if "le" in info.labels:
            for i, le in enumerate(("0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "+Inf")):
                samples.append(Sample.make(name, step * 10 + i, le=le))
        elif "quantile" in info.labels:
            for q in ("0.5", "0.9", "0.95", "0.99", "1"):
                samples.append(Sample.make(name, 0.01 * step + float(q), quantile=q))
        elif info.labels:
            for v in ("a", "b", "c"):
                samples.append(Sample.make(name, step + 1, **{info.labels[0]: v}))
        else:
            samples.append(Sample.make(name, step + 0.5))
    f = 0
    while len(samples) < N_SERIES:
        for name in feature_metrics:
            if len(samples) >= N_SERIES:
                break
            samples.append(Sample.make(name, 0.25 * step - 1.0, feature=f"feature_{f:03d}"))
        f += 1
    return Snapshot("fraud", "2024-06-01", "bench-host:4242", time.time(), 60.0, tuple(samples))


class Sink:
    """Loopback receivers that read and discard: one UDP socket and a TCP listener."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        threading.Thread(target=self._drain_udp, daemon=True).start()
        threading.Thread(target=self._accept, daemon=True).start()

    def _drain_udp(self) -> None:
        self.udp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                self.udp.recv(65535)
            except OSError:
                pass

    def _accept(self) -> None:
        self.tcp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            threading.Thread(target=self._drain_tcp, args=(conn,), daemon=True).start()

    def _drain_tcp(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not conn.recv(1 << 20):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    @property
    def udp_port(self) -> int:
        return int(self.udp.getsockname()[1])

    @property
    def tcp_port(self) -> int:
        return int(self.tcp.getsockname()[1])

    def close(self) -> None:
        self._stop.set()
        self.udp.close()
        self.tcp.close()


def time_emits(emitter: Any, repeats: int) -> tuple[float, float, list[float]]:
    """(first emit s, median of later emits s, all later times)."""
    t0 = time.perf_counter()
    emitter.emit(big_snapshot(0))
    first = time.perf_counter() - t0
    times = []
    for step in range(1, repeats + 1):
        snap = big_snapshot(step)
        t0 = time.perf_counter()
        emitter.emit(snap)
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), times


def bench_emit(repeats: int) -> None:
    sink = Sink()
    rows = []
    try:
        for label, make, per_emit in (
            (
                "StatsD UDP (max_packet=1432)",
                lambda: StatsdEmitter(port=sink.udp_port),
                "datagrams",
            ),
            (
                "StatsD UDP (max_packet=8932)",
                lambda: StatsdEmitter(port=sink.udp_port, max_packet=8932),
                "datagrams",
            ),
            ("StatsD TCP", lambda: StatsdEmitter(port=sink.tcp_port, protocol="tcp"), "writes"),
            ("Graphite plaintext", lambda: GraphiteEmitter(port=sink.tcp_port), "-"),
            (
                "Graphite pickle",
                lambda: GraphiteEmitter(port=sink.tcp_port, protocol="pickle"),
                "-",
            ),
        ):
            em = make()
            first, med, _ = time_emits(em, repeats)
            stats = em.stats
            emits = repeats + 1
            packets = f"{stats['packets'] / emits:.0f}" if "packets" in stats else per_emit
            rows.append(
                (label, first * 1e3, med * 1e3, packets, stats["bytes"] / emits, stats["dropped"])
            )
            em.close()
        prom = PrometheusEmitter(port=0)
        first, med, _ = time_emits(prom, repeats)
        scrapes = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with __import__("urllib.request").request.urlopen(prom.url, timeout=5) as resp:
                body = resp.read()
            scrapes.append(time.perf_counter() - t0)
        rows.append(("Prometheus (render at emit)", first * 1e3, med * 1e3, "-", len(body), 0))
        rows.append(
            (
                "Prometheus scrape (GET /metrics)",
                float("nan"),
                statistics.median(scrapes) * 1e3,
                "1",
                len(body),
                0,
            )
        )
        prom.close()
    finally:
        sink.close()
    print(f"### One emit of {N_SERIES} series (median of {repeats} after the first)\n")
    print("| emitter | first emit (ms) | emit p50 (ms) | packets / emit | bytes / emit | dropped |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, first_ms, med_ms, packets, nbytes, dropped in rows:
        first_txt = "–" if first_ms != first_ms else f"{first_ms:.2f}"
        print(f"| {label} | {first_txt} | {med_ms:.2f} | {packets} | {nbytes:,.0f} | {dropped} |")
    print()


# -- predict latency with dead backends ----------------------------------------------------------


def closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def slow_failing_dns(name: str, delay: float) -> Iterator[None]:
    real = statsd_mod._getaddrinfo

    def fake(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            if len(args) >= 5 and args[4] & socket.AI_NUMERICHOST:
                raise socket.gaierror(socket.EAI_NONAME, "not numeric")
            time.sleep(delay)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    setattr(statsd_mod, "_getaddrinfo", fake)  # noqa: B010 - a module global
    try:
        yield
    finally:
        setattr(statsd_mod, "_getaddrinfo", real)  # noqa: B010


def predict_latencies(emitters: list[Any], seconds: float) -> tuple[float, float, int]:
    """p50 and p99 (ns) of a tracked trivial predict, called for ``seconds`` while the reporter
    flushes every 0.25 s; and the number of calls."""
    mon = mlmon.Monitor("bench", emitters=emitters, flush_interval=0.25, window=5.0)
    predict = mon.track(identity)
    clock = time.perf_counter_ns
    for _ in range(2000):
        predict(1.0)
    lat = array("q")
    append = lat.append
    end = clock() + int(seconds * 1e9)
    while True:
        for _ in range(1000):
            t0 = clock()
            predict(1.0)
            append(clock() - t0)
        if t0 > end:
            break
    mon.close()
    ordered = sorted(lat)
    n = len(ordered)
    return float(ordered[n // 2]), float(ordered[min(n - 1, int(n * 0.99))]), n


def bench_dead_backends(rounds: int, seconds: float) -> None:
    blackhole = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never reads
    hole_port = int(blackhole.getsockname()[1])
    configs: list[tuple[str, Callable[[], list[Any]]]] = [
        ("no emitter", lambda: []),
        ("StatsD, closed UDP port", lambda: [StatsdEmitter(port=closed_port(socket.SOCK_DGRAM))]),
        (
            "Graphite, closed TCP port",
            lambda: [GraphiteEmitter(port=closed_port(socket.SOCK_STREAM), reconnect_max=0.25)],
        ),
        (
            "Graphite, black-holed (never reads)",
            lambda: [GraphiteEmitter(port=hole_port, timeout=0.2, reconnect_max=0.25)],
        ),
        (
            "StatsD, DNS fails after 0.5 s",
            lambda: [StatsdEmitter("dns.invalid", 8125, timeout=0.2)],
        ),
    ]
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name, _ in configs}
    with slow_failing_dns("dns.invalid", 0.5):
        for _ in range(rounds):
            for name, make in configs:
                results[name].append(predict_latencies(make(), seconds))
    blackhole.close()
    base50 = statistics.median(r[0] for r in results["no emitter"])
    base99 = statistics.median(r[1] for r in results["no emitter"])
    calls = statistics.median(r[2] for r in results["no emitter"])
    print(
        f"### Predict latency with a dead backend ({rounds} interleaved rounds of {seconds:g} s "
        f"(~{calls:,.0f} calls) per backend, flush every 0.25 s)\n"
    )
    print("| backend | p50 (µs) | p99 (µs) | p50 ratio | p99 ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, _ in configs:
        p50 = statistics.median(r[0] for r in results[name])
        p99 = statistics.median(r[1] for r in results[name])
        print(
            f"| {name} | {p50 / 1e3:.2f} | {p99 / 1e3:.2f} | {p50 / base50:.3f} | {p99 / base99:.3f} |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    args = parser.parse_args()
    repeats, rounds, seconds = (5, 2, 0.5) if args.quick else (30, 7, 2.0)
    logging.getLogger("mlmon").setLevel(logging.CRITICAL)  # dead backends are the point here
    print(
        f"mlmon emitters benchmark — Python {platform.python_version()}, {platform.machine()}, "
        f"{platform.system()}\n"
    )
    bench_emit(repeats)
    bench_dead_backends(rounds, seconds)


if __name__ == "__main__":
    main()
