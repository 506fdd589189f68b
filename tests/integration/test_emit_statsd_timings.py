"""Raw latency timings through the real StatsD daemon: its timer counts equal the calls."""

from __future__ import annotations

import servers

import mlmon
from mlmon.emitters.statsd import StatsdEmitter


def run(statsd_daemon: servers.StatsdDaemon, name: str, calls: int, max_timings: int) -> None:
    em = StatsdEmitter(port=statsd_daemon.port, prefix="ml", timings=True)
    mon = mlmon.Monitor(name, emitters=[em], max_timings=max_timings, flush_interval=60.0, window=60.0)
    predict = mon.track(lambda x: x * 0.5)
    for i in range(calls):
        predict(i)
    mon.close()  # one reporter cycle: every call's latency is in (or sampled into) its timings
    path = statsd_daemon.timer_path(f"ml.{name}.mlmon_latency_ms", "count")
    statsd_daemon.carbon.wait_for_sum(path, calls)


def test_all_timings_reach_the_daemon(statsd_daemon: servers.StatsdDaemon) -> None:
    run(statsd_daemon, "timed", calls=300, max_timings=10_000)


def test_sampled_timings_carry_their_rate_so_counts_stay_exact(statsd_daemon: servers.StatsdDaemon) -> None:
    # 2,000 calls, a 100-value sample: each line says @0.05, the daemon counts 100 / 0.05.
    run(statsd_daemon, "sampled", calls=2000, max_timings=100)
