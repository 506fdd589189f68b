"""OTLP: the cost of one emit of a 1,000-series snapshot, against mlmon's StatsD and Prometheus
emitters, in one run.

Run: ``PYTHONPATH=. python benchmarks/bench_otlp.py [--quick]`` (needs ``mlmon[otel]``).

Every emitter gets the same 1,000-series snapshots (``bench_emitters.big_snapshot``), on
loopback: StatsD to a UDP socket that reads and discards, Prometheus rendering for its endpoint,
``OtlpEmitter`` through the OpenTelemetry SDK's ``OTLPMetricExporter`` (OTLP/HTTP protobuf) to a
receiver that answers 200 without decoding. The OTLP emit is also split into its parts: building
the SDK's ``MetricsData`` from the snapshot, and the SDK encoding it to protobuf. Rounds
interleave the emitters; each figure is the median over rounds of the per-round median.

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from bench_emitters import N_SERIES, Sink, big_snapshot  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics  # noqa: E402
from otlp_receiver import OtlpReceiver  # noqa: E402

from mlmon.emitters.otlp import OtlpEmitter  # noqa: E402
from mlmon.emitters.prometheus import PrometheusEmitter  # noqa: E402
from mlmon.emitters.statsd import StatsdEmitter  # noqa: E402


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()
    rounds, per_round = (3, 5) if args.quick else (7, 15)
    logging.getLogger("mlmon").setLevel(logging.CRITICAL)
    print(
        f"mlmon OTLP emit benchmark — Python {platform.python_version()}, {platform.machine()}, "
        f"{platform.system()}\n"
    )
    sink = Sink()
    receiver = OtlpReceiver(mode="discard")
    otlp = OtlpEmitter(receiver.url, timeout=10.0)
    statsd = StatsdEmitter(port=sink.udp_port)
    prom = PrometheusEmitter(port=0)
    snaps = [big_snapshot(step) for step in range(per_round + 1)]
    assert all(len(s) == N_SERIES for s in snaps)
    built = {id(s): otlp.metrics_data(s) for s in snaps}  # for timing the encoding alone
    cases: dict[str, Callable[[Any], Any]] = {
        "StatsD UDP (max_packet=1432)": statsd.emit,
        "Prometheus (render at emit)": prom.emit,
        "OTLP/HTTP (OtlpEmitter, whole emit)": otlp.emit,
        "  of which: snapshot → SDK MetricsData": otlp.metrics_data,
        "  of which: SDK protobuf encoding": lambda s: encode_metrics(
            built[id(s)]
        ).SerializeToString(),
    }
    for emit in cases.values():  # first emits: names rendered and cached, connections opened
        emit(snaps[0])
    medians: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for label, emit in cases.items():
            medians[label].append(statistics.median(timed(lambda s=s, emit=emit: emit(s)) for s in snaps[1:]))
    otlp_bytes = statistics.median(receiver.bodies)
    otlp.close()
    statsd.close()
    prom.close()
    receiver.stop()
    sink.close()
    base = statistics.median(medians["StatsD UDP (max_packet=1432)"])
    print(f"### One emit of {N_SERIES} series (median over {rounds} rounds of {per_round} emits)\n")
    print("| emitter | emit p50 (ms) | ratio to StatsD |")
    print("|---|---:|---:|")
    for label, values in medians.items():
        med = statistics.median(values)
        print(f"| {label} | {med * 1e3:.2f} | {med / base:.2f}x |")
    print(f"\nOTLP request body: {otlp_bytes:,.0f} bytes per emit (uncompressed protobuf).")


if __name__ == "__main__":
    main()
