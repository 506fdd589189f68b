"""Alerts: a precision drop, a score-variance change and a click-through fall, sent to a webhook.

A simulated hour of traffic on a fake clock: labels arrive a minute after each prediction, users
click on some recommendations. At 30 minutes the model degrades (noisier scores, wrong more often)
and users stop clicking as much. Three rules catch it; events go to a real local HTTP webhook.

Run: python examples/alerts.py
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

import mlmon
from mlmon import alerts
from mlmon.testing import FakeClock

received: list[dict[str, object]] = []


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=server.serve_forever, daemon=True).start()
webhook = alerts.WebhookSink(f"http://127.0.0.1:{server.server_port}/alerts")

clock = FakeClock()
rules = [
    alerts.PercentDrop("mlmon_precision", percent=10),
    alerts.VarianceChange("mlmon_output_variance", factor=1.5),
    alerts.PercentChange("mlmon_outcome_rate", percent=30, labels={"outcome": "click"}),
]
mon = mlmon.Monitor(
    "recommender", task=mlmon.BinaryClassification(), window=300.0, flush_interval=10.0,
    clock=clock, rules=rules, alert_sinks=[webhook],
)  # fmt: skip
rng = np.random.default_rng(3)
pending: list[tuple[float, range, np.ndarray]] = []

for second in range(0, 3600, 10):
    degraded = second >= 1800
    truth = rng.random(200) < 0.3
    noise = 0.35 if degraded else 0.15
    scores = np.clip(np.where(truth, 0.7, 0.3) + rng.normal(0, noise, 200), 0, 1)
    with mon.track() as call:
        call.outputs(scores)
    pending.append((second + 60.0, call.ids, truth.astype(int)))
    clicks = rng.binomial(200, 0.05 if degraded else 0.10)
    for _ in range(clicks):
        mon.log_outcome("click")
    while pending and pending[0][0] <= second:
        _, ids, labels = pending.pop(0)
        mon.log_feedback(ids, labels)
    clock.advance(10.0)
    mon.flush()

mon.close()
webhook.close()
server.shutdown()
fired = sorted({str(e["rule"]) for e in received if e["state"] == "firing"})
first = {str(e["rule"]): float(e["at"]) - clock.time() + 3600 for e in reversed(received) if e["state"] == "firing"}
for rule in fired:
    print(f"{rule}: firing {first[rule] - 1800:+.0f} s after the change")
print(f"webhook received {len(received)} events; sent={webhook.sent} failed={webhook.failed}")
assert fired == sorted(r.name for r in rules), fired
assert all(t >= 1800 for t in first.values()), "no alert may fire before the change"
