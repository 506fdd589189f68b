"""PrometheusEmitter(push_delete_on_close=True) against the real Pushgateway: the group a monitor
pushed is deleted (DELETE on its grouping-key URL) when that monitor closes, and only that group.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Any

import pytest

import mlmon
from mlmon import _env
from mlmon.emitters.prometheus import PrometheusEmitter


def groups(pushgateway: str) -> list[dict[str, str]]:
    """The grouping keys the Pushgateway holds (its /api/v1/metrics answer)."""
    with urllib.request.urlopen(f"{pushgateway}/api/v1/metrics", timeout=5) as resp:
        data: Any = json.loads(resp.read())
    return sorted(({k: v for k, v in g["labels"].items()} for g in data["data"]), key=str)


def calls_pushed(pushgateway: str, model: str) -> float | None:
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith("mlmon_calls_total{") and f'model="{model}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_group_is_deleted_when_the_monitor_closes(pushgateway_url: str) -> None:
    em = PrometheusEmitter(port=0, push_url=pushgateway_url, job="nightly", push_delete_on_close=True)
    mon = mlmon.Monitor("fraud", instance="batch:1", emitters=[em], flush_interval=60.0, window=60.0)
    predict = mon.track(lambda x: x)
    for _ in range(3):
        predict(1)
    mon.flush()
    assert groups(pushgateway_url) == [{"instance": "batch:1", "job": "nightly", "model": "fraud"}]
    assert calls_pushed(pushgateway_url, "fraud") == 3.0
    mon.close()
    assert groups(pushgateway_url) == []
    assert em.stats["push_deletes"] == 1 and em.stats["push_delete_failures"] == 0


def test_without_the_option_the_group_stays(pushgateway_url: str) -> None:
    em = PrometheusEmitter(port=0, push_url=pushgateway_url, job="nightly")
    mon = mlmon.Monitor("fraud", instance="batch:1", emitters=[em])
    mon.track(lambda x: x)(1)
    mon.close()
    assert groups(pushgateway_url) == [{"instance": "batch:1", "job": "nightly", "model": "fraud"}]
    assert calls_pushed(pushgateway_url, "fraud") == 1.0


def test_a_shared_emitter_deletes_each_monitors_group_at_its_own_close(pushgateway_url: str) -> None:
    em = PrometheusEmitter(port=0, push_url=pushgateway_url, push_delete_on_close=True)
    a = mlmon.Monitor("fraud", instance="w:1", emitters=[em])
    b = mlmon.Monitor("churn", instance="w:1", emitters=[em])
    a.track(lambda x: x)(1)
    b.track(lambda x: x)(1)
    a.flush()
    b.flush()
    assert [g["model"] for g in groups(pushgateway_url)] == ["churn", "fraud"]
    a.close()
    assert [g["model"] for g in groups(pushgateway_url)] == ["churn"]
    b.flush()  # the endpoint and the pushes of the other monitor go on
    assert calls_pushed(pushgateway_url, "churn") == 1.0
    b.close()
    assert groups(pushgateway_url) == []


def test_the_url_option_turns_it_on(pushgateway_url: str) -> None:
    em = _env.emitter_from_url(
        f"prometheus://127.0.0.1:0?push_url={pushgateway_url}&push_delete_on_close=true&job=j"
    )
    assert isinstance(em, PrometheusEmitter) and em.push_delete_on_close
    mon = mlmon.Monitor("m", instance="h:2", emitters=[em])
    mon.track(lambda x: x)(1)
    mon.flush()
    assert groups(pushgateway_url) == [{"instance": "h:2", "job": "j", "model": "m"}]
    mon.close()
    assert groups(pushgateway_url) == []


def test_a_gateway_that_is_gone_at_close_costs_at_most_the_push_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A listener that accepts and never answers: every request runs into its deadline.
    hole = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{hole.getsockname()[1]}"
    em = PrometheusEmitter(port=0, push_url=url, push_timeout=0.3, push_delete_on_close=True)
    em.open("m", None, "h:1")
    with pytest.raises(OSError):
        em._push(mlmon.Monitor("m", instance="h:1").snapshot())  # the push fails, the group is noted
    t0 = time.monotonic()
    em.release("m", None, "h:1")
    assert time.monotonic() - t0 < 0.3 + 0.4
    assert em.stats["push_delete_failures"] == 1
    assert "could not delete 1 Pushgateway group" in caplog.text
    hole.close()


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="push_delete_on_close=True needs a push_url"):
        PrometheusEmitter(port=0, push_delete_on_close=True)
    with pytest.raises(ValueError, match="push_delete_on_close must be a bool"):
        PrometheusEmitter(port=0, push_url="http://127.0.0.1:9091", push_delete_on_close="yes")  # type: ignore[arg-type]
