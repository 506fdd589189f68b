"""Configuration from the environment (mlmon/_env.py, docs/configuration.md).

The kill switch, emitters from URLs (built for real, talking to loopback sockets), the model
identity, the precedence over what the code says, and a ValueError naming the variable for
every malformed value.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlmon
from mlmon import _default as _api
from mlmon import _env
from mlmon.emitters import (
    ConsoleEmitter,
    GraphiteEmitter,
    JsonlEmitter,
    PrometheusEmitter,
    StatsdEmitter,
)
from mlmon.testing import InMemoryEmitter

ROOT = Path(__file__).resolve().parent.parent
VARS = (_env.DISABLED, _env.EMITTERS, _env.MODEL, _env.MODEL_VERSION)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No MLMON_* variable from outside; the default monitor and the switch restored after."""
    for var in VARS:
        monkeypatch.delenv(var, raising=False)
    if _api._default is not None:
        _api._default.close()
        _api._default = None
    yield monkeypatch
    if _api._default is not None:
        _api._default.close()
        _api._default = None
    monkeypatch.undo()
    _env.kill_switch()  # the switch as the real environment has it


def udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5.0)
    return s


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


# ----------------------------------------------------------------------------- kill switch


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", " on "])
def test_the_kill_switch_returns_the_function_unchanged(clean: pytest.MonkeyPatch, value: str) -> None:
    clean.setenv("MLMON_DISABLED", value)

    def predict(x: float) -> float:
        return x

    mon = mlmon.Monitor("killed", enabled=True)
    assert mon.track(predict) is predict
    assert mon.track(outputs=False)(predict) is predict
    assert mlmon.track(predict) is predict
    with mon.track(features=[[1.0]]) as call:  # the with form records nothing
        call.outputs([0.5])
    assert mon.snapshot().get("mlmon_calls_total") == 0.0
    assert mon._scheduler is None  # no background thread either
    mon.close()


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
def test_a_switch_that_is_off_tracks(clean: pytest.MonkeyPatch, value: str) -> None:
    clean.setenv("MLMON_DISABLED", value)
    mon = mlmon.Monitor("alive")

    def predict(x: float) -> float:
        return x

    tracked = mon.track(predict)
    assert tracked is not predict
    tracked(1.0)
    with mon.track():
        pass
    assert mon.snapshot().get("mlmon_calls_total") == 2.0
    mon.close()


def test_configure_under_the_switch_builds_a_disabled_monitor_and_no_env_emitter(
    clean: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    clean.setenv("MLMON_DISABLED", "1")
    clean.setenv("MLMON_EMITTERS", f"prometheus://127.0.0.1:{port}")
    mon = mlmon.configure(model="fraud", enabled=True)  # the switch wins over enabled=True
    assert mon.enabled is False and mon.emitters == []
    with socket.create_server(("127.0.0.1", port)):  # nobody took the port
        pass

    @mlmon.track
    def predict(x: float) -> float:
        return x

    assert predict(3.0) == 3.0
    assert mon.snapshot().get("mlmon_calls_total") == 0.0


def test_a_malformed_switch_is_a_value_error_where_configuration_is_read(
    clean: pytest.MonkeyPatch,
) -> None:
    clean.setenv("MLMON_DISABLED", "sometimes")
    with pytest.raises(ValueError, match=r"MLMON_DISABLED .*'sometimes'"):
        mlmon.configure(model="x")
    mon = mlmon.Monitor("x")
    with pytest.raises(ValueError, match="MLMON_DISABLED"):
        mon.track(lambda x: x)
    with pytest.raises(ValueError, match="MLMON_DISABLED"):
        mlmon.track(lambda x: x)
    with mon.track():  # never raised into a call: the with form uses the last good reading
        pass
    assert mon.snapshot().get("mlmon_calls_total") == 1.0
    mon.close()


def test_the_switch_set_before_start_covers_the_with_form_from_the_first_call() -> None:
    code = (
        "import mlmon\n"
        "mon = mlmon.Monitor('sub')\n"
        "with mon.track() as call:\n"
        "    call.outputs([1.0])\n"
        "def f(x): return x\n"
        "print(mon.track(f) is f, mlmon.track(f) is f, mon.snapshot().get('mlmon_calls_total'))\n"
        "mon.close()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLMON_DISABLED": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "0.0"]
    env["MLMON_DISABLED"] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False", "1.0"]


# ----------------------------------------------------------------------------- model identity and precedence


def test_model_and_version_come_from_the_environment_when_the_code_gives_none(
    clean: pytest.MonkeyPatch,
) -> None:
    clean.setenv("MLMON_MODEL", "churn")
    clean.setenv("MLMON_MODEL_VERSION", "2024.06.1")
    mon = mlmon.configure()
    assert (mon.name, mon.version) == ("churn", "2024.06.1")
    mon = mlmon.configure(model="fraud", version="v9")  # the code wins
    assert (mon.name, mon.version) == ("fraud", "v9")
    mon = mlmon.configure(model="fraud")  # each argument on its own
    assert (mon.name, mon.version) == ("fraud", "2024.06.1")


def test_the_default_monitor_takes_the_identity_from_the_environment(
    clean: pytest.MonkeyPatch,
) -> None:
    clean.setenv("MLMON_MODEL", "ranker")
    clean.setenv("MLMON_MODEL_VERSION", "7")
    mon = mlmon.get_monitor()
    assert (mon.name, mon.version) == ("ranker", "7")


def test_a_malformed_identity_names_its_variable(
    clean: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean.setenv("MLMON_MODEL", "fraud model")
    with pytest.raises(ValueError, match="MLMON_MODEL must match"):
        mlmon.configure()
    # A tracked call that creates the default monitor never raises: logged, named "default".
    predict = mlmon.track(lambda x: x)
    assert predict(1) == 1
    assert mlmon.get_monitor().name == "default"
    assert "MLMON_MODEL" in caplog.text
    assert mlmon.configure(model="fraud").name == "fraud"  # overridden by the code: not read
    clean.delenv("MLMON_MODEL")
    clean.setenv("MLMON_MODEL_VERSION", "v1\nv2")
    with pytest.raises(ValueError, match="MLMON_MODEL_VERSION"):
        mlmon.configure(model="x")
    assert mlmon.configure(model="x", version="3").version == "3"


def test_emitters_come_from_the_environment_only_when_the_code_gives_none(
    clean: pytest.MonkeyPatch,
) -> None:
    statsd = udp_socket()
    clean.setenv("MLMON_EMITTERS", f"statsd://127.0.0.1:{statsd.getsockname()[1]}?prefix=ml")
    clean.setenv("MLMON_MODEL", "fraud")
    mon = mlmon.configure()
    assert [type(e) for e in mon.emitters] == [StatsdEmitter]
    predict = mlmon.track(lambda x: x)
    for _ in range(4):
        predict(1)
    mon.close()
    lines = statsd.recv(65535).decode().splitlines()
    assert "ml.fraud.mlmon_calls_total:4|c" in lines
    statsd.close()
    mem = InMemoryEmitter()
    mon = mlmon.configure(emitters=[mem])  # the code wins: nothing built from the variable
    assert mon.emitters == [mem]
    mon = mlmon.configure(emitters=[])  # an explicit "no emitters" too
    assert mon.emitters == []


# ----------------------------------------------------------------------------- URLs


def test_every_scheme_builds_its_emitter(tmp_path: Path) -> None:
    carbon = socket.create_server(("127.0.0.1", 0))
    built = []
    try:
        built = _env.emitters_from_env({"MLMON_EMITTERS": ", ".join([
            "statsd://127.0.0.1:8125?prefix=ml&protocol=tcp&tags=dogstatsd&timings=0.25&timeout=0.5",
            f"graphite://127.0.0.1:{carbon.getsockname()[1]}?prefix=ml.x&tags=true&name=carbon",
            "prometheus://127.0.0.1:0/custom?job=batch",
            f"jsonl://{tmp_path}/logs/mlmon.jsonl?max_bytes=4096&backups=1",
            "console://stderr?name=tty",
        ])})  # fmt: skip
        statsd, graphite, prom, jsonl, console = built
        assert isinstance(statsd, StatsdEmitter) and statsd.prefix == "ml" and statsd.timeout == 0.5
        assert isinstance(graphite, GraphiteEmitter) and graphite.name == "carbon" and graphite.tags
        assert isinstance(prom, PrometheusEmitter) and prom.path == "/custom" and prom.job == "batch"
        assert isinstance(jsonl, JsonlEmitter) and jsonl.path == tmp_path / "logs" / "mlmon.jsonl"
        assert jsonl.max_bytes == 4096 and jsonl.backups == 1
        assert isinstance(console, ConsoleEmitter) and console.name == "tty"
        mon = mlmon.Monitor("urls", instance="h:1", emitters=[graphite, prom, jsonl])
        mon.track(lambda x: x)(1)
        mon.flush()
        with urllib.request.urlopen(prom.url, timeout=5) as resp:
            text = resp.read().decode()
        assert 'mlmon_calls_total{model="urls",instance="h:1"} 1' in text
        record = json.loads((tmp_path / "logs" / "mlmon.jsonl").read_text().splitlines()[0])
        assert record["model"] == "urls"
        mon.close()
        built = [statsd, console]
    finally:
        for em in built:
            em.close()
        carbon.close()


def test_defaults_of_each_scheme() -> None:
    statsd = _env.emitter_from_url("statsd://localhost")
    assert (statsd.host, statsd.port, statsd.prefix) == ("localhost", 8125, "")  # type: ignore[attr-defined]
    statsd.close()
    graphite = _env.emitter_from_url("graphite://localhost?protocol=pickle")
    assert graphite.port == 2004  # type: ignore[attr-defined]
    graphite.close()
    port = free_port()
    prom = _env.emitter_from_url(f"prometheus://127.0.0.1:{port}")
    assert (prom.port, prom.path) == (port, "/metrics")  # type: ignore[attr-defined]
    prom.close()
    console = _env.emitter_from_url("console://")
    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out
    try:
        mon = mlmon.Monitor("tty", emitters=[console])
        mon.flush()
        mon.close()
    finally:
        sys.stdout = sys_stdout
    assert "mlmon tty" in out.getvalue()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("kafka://broker:9092", "'kafka://broker:9092': not an emitter URL"),
        ("statsd:127.0.0.1", "not an emitter URL"),
        ("statsd://127.0.0.1:99999", "port"),
        ("statsd://127.0.0.1:http", "port"),
        ("statsd://:8125", "needs a host"),
        ("statsd://127.0.0.1?prefx=ml", "'statsd://127.0.0.1?prefx=ml': unknown option 'prefx'"),
        ("statsd://127.0.0.1?prefix=a&prefix=b", "given twice"),
        ("statsd://127.0.0.1?timeout=soon", "timeout='soon' is not valid"),
        ("statsd://127.0.0.1?timeout=-1", "timeout must be a positive"),
        ("statsd://127.0.0.1?protocol=quic", "protocol"),
        ("statsd://127.0.0.1/path", "no path"),
        ("graphite://127.0.0.1?tags=maybe", "tags='maybe' is not valid"),
        ("prometheus://127.0.0.1:9464?push_url=ftp://x", "push_url"),
        ("jsonl://relative/path.jsonl", "jsonl:///absolute/path"),
        ("jsonl://", "jsonl:///absolute/path"),
        ("console://printer", "console://"),
        ("otlp://127.0.0.1:4318#frag", "fragment"),
        ("otlp://127.0.0.1:bad", "port"),
        ("statsd://127.0.0.1,,console://", "empty entry"),
        ("console://,console://", "two emitters are named 'console'"),
    ],
)
def test_malformed_urls_are_value_errors_naming_the_variable(value: str, message: str) -> None:
    with pytest.raises(ValueError, match="MLMON_EMITTERS") as info:
        _env.emitters_from_env({"MLMON_EMITTERS": value})
    assert message in str(info.value)


def test_a_refused_url_closes_the_emitters_built_before_it() -> None:
    port = free_port()
    with pytest.raises(ValueError, match="MLMON_EMITTERS"):
        _env.emitters_from_env({"MLMON_EMITTERS": f"prometheus://127.0.0.1:{port}, bogus://x"})
    with socket.create_server(("127.0.0.1", port)):  # the endpoint was stopped again
        pass


def test_configure_with_a_malformed_variable_keeps_the_previous_monitor(
    clean: pytest.MonkeyPatch,
) -> None:
    first = mlmon.configure(model="first")
    clean.setenv("MLMON_EMITTERS", "statsd://127.0.0.1?nope=1")
    with pytest.raises(ValueError, match="MLMON_EMITTERS"):
        mlmon.configure(model="second")
    assert mlmon.get_monitor() is first and not first._closed


def test_emitter_from_url_names_url_when_called_directly() -> None:
    with pytest.raises(ValueError, match=r"^url: 'kafka://x'"):
        mlmon.emitter_from_url("kafka://x")
    assert mlmon.emitters_from_env({}) == []
    assert mlmon.emitters_from_env({"MLMON_EMITTERS": "  "}) == []


# option -> (text in the URL, the attribute it sets on the emitter, its value there)
OPTIONS: dict[tuple[str, str], tuple[str, str, object]] = {
    ("statsd", "name"): ("custom", "name", "custom"),
    ("statsd", "timeout"): ("0.5", "timeout", 0.5),
    ("statsd", "prefix"): ("ml", "prefix", "ml"),
    ("statsd", "protocol"): ("tcp", "protocol", "tcp"),
    ("statsd", "tags"): ("dogstatsd", "tags", "dogstatsd"),
    ("statsd", "timings"): ("0.5", "timing_rate", 0.5),
    ("statsd", "max_packet"): ("1400", "max_packet", 1400),
    ("statsd", "instance_in_path"): ("1", "_renderer.instance_in_path", True),
    ("statsd", "version_in_path"): ("yes", "_renderer.version_in_path", True),
    ("graphite", "name"): ("custom", "name", "custom"),
    ("graphite", "timeout"): ("0.5", "timeout", 0.5),
    ("graphite", "prefix"): ("ml", "prefix", "ml"),
    ("graphite", "protocol"): ("pickle", "protocol", "pickle"),
    ("graphite", "tags"): ("on", "tags", True),
    ("graphite", "buffer_lines"): ("1000", "buffer_lines", 1000),
    ("graphite", "instance_in_path"): ("0", "_renderer.instance_in_path", False),
    ("graphite", "version_in_path"): ("true", "_renderer.version_in_path", True),
    ("prometheus", "name"): ("custom", "name", "custom"),
    ("prometheus", "push_url"): ("http://127.0.0.1:9", "push_url", "http://127.0.0.1:9"),
    ("prometheus", "job"): ("j", "job", "j"),
    ("prometheus", "push_timeout"): ("1.5", "push_timeout", 1.5),
    ("prometheus", "push_delete_on_close"): ("true", "push_delete_on_close", True),
    ("otlp", "name"): ("custom", "name", "custom"),
    ("otlp", "timeout"): ("0.5", "timeout", 0.5),
    ("otlp", "service_name"): ("svc", "service_name", "svc"),
    ("jsonl", "name"): ("custom", "name", "custom"),
    ("jsonl", "timeout"): ("0.5", "timeout", 0.5),
    ("jsonl", "max_bytes"): ("4096", "max_bytes", 4096),
    ("jsonl", "backups"): ("2", "backups", 2),
    ("console", "name"): ("custom", "name", "custom"),
    ("console", "timeout"): ("0.5", "timeout", 0.5),
}
BASES = {
    "statsd": "statsd://127.0.0.1:8125", "graphite": "graphite://127.0.0.1:2003",
    "prometheus": "prometheus://127.0.0.1:0?push_url=http://127.0.0.1:9",
    "otlp": "otlp://127.0.0.1:4318", "jsonl": "jsonl:///tmp/mlmon-test-env-options.jsonl",
    "console": "console://",
}  # fmt: skip


def test_the_option_table_covers_every_accepted_option() -> None:
    assert set(OPTIONS) == {(scheme, o) for scheme, opts in _env._OPTIONS.items() for o in opts}


@pytest.mark.parametrize(("scheme", "option"), sorted(OPTIONS))
def test_every_documented_option_reaches_its_emitter(scheme: str, option: str) -> None:
    text, attr, expected = OPTIONS[(scheme, option)]
    base = BASES[scheme]
    if option == "push_url":
        base = "prometheus://127.0.0.1:0"
    sep = "&" if "?" in base else "?"
    em = _env.emitter_from_url(f"{base}{sep}{option}={text}")
    try:
        value: object = em
        for part in attr.split("."):
            value = getattr(value, part)
        assert value == expected
    finally:
        em.close()
    assert f"`{option}`" in (ROOT / "docs" / "configuration.md").read_text()
