"""ASGI request ids and metrics endpoint, and gunicorn worker life cycles with file_sd targets.

The examples (fastapi_app.py, flask_gunicorn.py) are run by test_examples.py and check the
happy paths end to end; these tests pin the edge cases and the worker restarts.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import mlmon
from mlmon.integrations.asgi import MetricsEndpoint, RequestIdMiddleware, current_request_id
from mlmon.integrations.gunicorn import child_exit_hook, remove_target_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# --------------------------------------------------------------------------- ASGI plumbing


def run_asgi(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Call an ASGI app once and return the messages it sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(headers: list[tuple[bytes, bytes]] | None = None, method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/", "headers": headers or []}


def echo_id_app(seen: list[str | None]) -> Callable[..., Any]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_request_id())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"stale")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def response_header(sent: list[dict[str, Any]], name: bytes) -> list[bytes]:
    return [v for k, v in sent[0]["headers"] if k == name]


# --------------------------------------------------------------------------- RequestIdMiddleware


def test_a_request_without_an_id_gets_a_fresh_one_in_the_handler_and_the_response() -> None:
    seen: list[str | None] = []
    sent = run_asgi(RequestIdMiddleware(echo_id_app(seen)), http_scope())
    assert re.fullmatch(r"[0-9a-f]{32}", seen[0] or "")
    assert [seen[0].encode()] == response_header(sent, b"x-request-id")  # the app's own is replaced


def test_the_callers_id_is_kept() -> None:
    seen: list[str | None] = []
    sent = run_asgi(RequestIdMiddleware(echo_id_app(seen)), http_scope([(b"X-Request-ID", b"order-17:a/b")]))
    assert ["order-17:a/b"] == seen
    assert [b"order-17:a/b"] == response_header(sent, b"x-request-id")


@pytest.mark.parametrize(
    "value",
    [b"two words", b"a\r\nSet-Cookie: x=1", b"x" * 129, "caf\u00e9".encode(), b""],
    ids=["space", "crlf", "too-long", "non-ascii", "empty"],
)
def test_an_unusable_caller_id_is_replaced_by_a_generated_one(value: bytes) -> None:
    seen: list[str | None] = []
    run_asgi(RequestIdMiddleware(echo_id_app(seen)), http_scope([(b"x-request-id", value)]))
    assert re.fullmatch(r"[0-9a-f]{32}", seen[0] or "")


def test_the_id_lives_only_while_the_request_is_handled() -> None:
    run_asgi(RequestIdMiddleware(echo_id_app([])), http_scope())
    assert current_request_id() is None


def test_concurrent_requests_each_see_their_own_id() -> None:
    seen: dict[str, str | None] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        before = current_request_id()
        await asyncio.sleep(0.01)  # the other request runs meanwhile
        seen[before or ""] = current_request_id()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = RequestIdMiddleware(app)

    async def one(rid: bytes) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request"}

        async def send(message: Any) -> None:
            pass

        await middleware(http_scope([(b"x-request-id", rid)]), receive, send)

    async def both() -> None:
        await asyncio.gather(one(b"a"), one(b"b"))

    asyncio.run(both())
    assert {"a": "a", "b": "b"} == seen


def test_a_custom_header_and_generator_are_used() -> None:
    seen: list[str | None] = []
    app = RequestIdMiddleware(echo_id_app(seen), header="X-Trace", generate=lambda: "fixed")
    sent = run_asgi(app, http_scope())
    assert ["fixed"] == seen
    assert [b"fixed"] == response_header(sent, b"x-trace")


def test_a_bad_header_name_is_refused() -> None:
    with pytest.raises(ValueError, match="header"):
        RequestIdMiddleware(echo_id_app([]), header="x request id")


def test_non_http_scopes_pass_through_untouched() -> None:
    calls: list[tuple[Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append((scope["type"], current_request_id()))

    async def noop(*_: Any) -> Any:
        return None

    asyncio.run(RequestIdMiddleware(app)({"type": "lifespan"}, noop, noop))
    assert [("lifespan", None)] == calls


# --------------------------------------------------------------------------- MetricsEndpoint


def test_the_endpoint_serves_the_last_emitted_snapshot_in_the_text_format() -> None:
    endpoint = MetricsEndpoint()
    mon = mlmon.Monitor("web_endpoint", version="3", emitters=[endpoint])
    assert [200, b""] == [run_asgi(endpoint, http_scope())[0]["status"], endpoint.render().encode()]
    mon.track(lambda x: x)(1.0)
    mon.flush()
    sent = run_asgi(endpoint, http_scope())
    assert 200 == sent[0]["status"]
    assert [b"text/plain; version=0.0.4; charset=utf-8"] == response_header(sent, b"content-type")
    assert re.search(rb'^mlmon_calls_total\{model="web_endpoint",version="3",instance="[^"]+"\} 1$', sent[1]["body"], re.M)
    assert [str(len(sent[1]["body"])).encode()] == response_header(sent, b"content-length")
    mon.close()


def test_head_has_no_body_and_other_methods_are_refused() -> None:
    endpoint = MetricsEndpoint()
    mon = mlmon.Monitor("web_methods", emitters=[endpoint])
    mon.flush()
    head = run_asgi(endpoint, http_scope(method="HEAD"))
    post = run_asgi(endpoint, http_scope(method="POST"))
    assert (200, b"") == (head[0]["status"], head[1]["body"])
    assert int(response_header(head, b"content-length")[0]) == len(endpoint.render().encode())
    assert (405, [b"GET, HEAD"]) == (post[0]["status"], response_header(post, b"allow"))
    mon.close()


def test_several_monitors_share_one_endpoint() -> None:
    endpoint = MetricsEndpoint()
    a = mlmon.Monitor("web_a", emitters=[endpoint])
    b = mlmon.Monitor("web_b", emitters=[endpoint])
    a.flush()
    b.flush()
    text = endpoint.render()
    assert 'model="web_a"' in text and 'model="web_b"' in text
    a.close()
    b.close()


def test_a_forked_child_forgets_the_parents_snapshots() -> None:
    endpoint = MetricsEndpoint()
    mon = mlmon.Monitor("web_fork", emitters=[endpoint])
    mon.flush()
    endpoint.after_fork()
    assert "" == endpoint.render()
    mon.close()


# --------------------------------------------------------------------------- gunicorn

needs_gunicorn = pytest.mark.skipif(
    sys.platform == "win32" or any(importlib.util.find_spec(m) is None for m in ("flask", "gunicorn")),
    reason="needs flask and gunicorn (POSIX)",
)


def targets(directory: Path) -> dict[int, str]:
    out = {}
    for path in directory.glob("mlmon-*.json"):
        group = json.loads(path.read_text())[0]
        out[int(group["labels"]["mlmon_pid"])] = group["targets"][0]
    return out


def calls_at(target: str) -> float | None:
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as resp:
        m = re.search(r"^mlmon_calls_total\{.*\} (\S+)$", resp.read().decode(), re.M)
    return None if m is None else float(m.group(1))


def wait_until(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


@contextmanager
def gunicorn(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """examples/flask_app.py under gunicorn --preload on a free port; yields (process, url, targets dir)."""
    sd_dir = tmp_path / "targets"
    sd_dir.mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.set_inheritable(True)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/predict"
    env = {**os.environ, "MLMON_TARGETS_DIR": str(sd_dir), "MLMON_FLUSH_INTERVAL": "0.2"}
    cmd = [sys.executable, "-m", "gunicorn", "--preload", "--bind", f"fd://{listener.fileno()}",
           "--chdir", str(EXAMPLES), *args, "flask_app:app"]  # fmt: skip
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, pass_fds=[listener.fileno()], stdout=out, stderr=out)
    listener.close()
    try:
        yield proc, url, sd_dir
    except BaseException:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post(url: str) -> int:
    req = urllib.request.Request(url, b'{"rows": [[1, 2, 3, 4]]}', {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        pid: int = json.loads(resp.read())["pid"]
        return pid


@needs_gunicorn
def test_a_recycled_worker_removes_its_target_and_its_successor_counts_from_zero(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "--workers", "1", "--max-requests", "5") as (proc, url, sd_dir):
        wait_until(lambda: len(targets(sd_dir)) == 2)
        pids = [post(url) for _ in range(12)]  # workers exit after 5 requests each
        assert [5, 5, 2] == [pids.count(p) for p in dict.fromkeys(pids)]
        last = pids[-1]
        live = wait_until(lambda: (t := targets(sd_dir)).keys() == {proc.pid, last} and t)
        assert 2.0 == wait_until(lambda: calls_at(live[last]) == 2.0 and 2.0)


@needs_gunicorn
def test_the_child_exit_hook_removes_the_target_of_a_killed_worker(tmp_path: Path) -> None:
    config = tmp_path / "gunicorn_conf.py"
    config.write_text(
        "import os\n"
        "from mlmon.integrations.gunicorn import child_exit_hook\n"
        "child_exit = child_exit_hook(os.environ['MLMON_TARGETS_DIR'])\n"
    )
    with gunicorn(tmp_path, "--workers", "2", "-c", str(config)) as (proc, _url, sd_dir):
        before = wait_until(lambda: len(t := targets(sd_dir)) == 3 and t)
        victim = max(pid for pid in before if pid != proc.pid)
        os.kill(victim, signal.SIGKILL)  # no atexit, no close(): only the master can clean up
        after = wait_until(lambda: len(t := targets(sd_dir)) == 3 and victim not in t and t)
        (successor,) = set(after) - set(before)
        wait_until(lambda: calls_at(after[successor]) == 0.0)  # a fresh endpoint, from zero
        assert not (sd_dir / f"mlmon-{victim}.json").exists()


def test_remove_target_file_reports_whether_there_was_one(tmp_path: Path) -> None:
    (tmp_path / "mlmon-7.json").write_text("[]")
    assert (True, False) == (remove_target_file(tmp_path, 7), remove_target_file(tmp_path, 7))
    with pytest.raises(ValueError, match="pid"):
        remove_target_file(tmp_path, 0)


def test_the_hook_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file_sd_dir"):
        child_exit_hook(tmp_path / "missing")


# --------------------------------------------------------------------------- shutdown (ASGI level)
# The real servers (uvicorn with 1 and 2 workers, gunicorn) are in
# tests/integration/test_shutdown_servers.py; these pin the protocol's edge cases.


def drive_lifespan(app: Any, messages: list[str]) -> list[str]:
    """Run an app's lifespan with ``messages`` from the server; the message types it answered."""
    incoming = iter([{"type": m} for m in messages])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send))
    return sent


def test_the_lifespan_closes_the_monitor_after_the_inner_lifespan_and_passes_its_state_on() -> None:
    from contextlib import asynccontextmanager

    from mlmon.integrations.asgi import lifespan
    from mlmon.testing import InMemoryEmitter

    memory = InMemoryEmitter()
    mon = mlmon.Monitor("web_lifespan_inner", emitters=[memory])
    events: list[tuple[str, int]] = []

    @asynccontextmanager
    async def mine(app: Any) -> Any:
        events.append(("startup", len(memory.snapshots)))
        yield {"model": "loaded"}
        mon.track(lambda: None)()  # the app's own shutdown may still record
        events.append(("shutdown", len(memory.snapshots)))

    async def use() -> Any:
        async with lifespan(mon, inner=mine)(None) as state:
            return state

    assert {"model": "loaded"} == asyncio.run(use())
    assert [("startup", 0), ("shutdown", 0)] == events  # closed only after the app's shutdown
    assert [1.0] == memory.values("mlmon_calls_total")


@pytest.mark.parametrize("bad", [object(), [object()], "mon"], ids=["object", "list", "str"])
def test_the_lifespan_and_the_middleware_refuse_what_is_not_a_monitor(bad: Any) -> None:
    from mlmon.integrations.asgi import ShutdownMiddleware, lifespan

    with pytest.raises(TypeError, match="monitors"):
        lifespan(bad)
    with pytest.raises(TypeError, match="monitors"):
        ShutdownMiddleware(echo_id_app([]), bad)


def test_the_middleware_closes_before_a_lifespan_app_answers_the_shutdown() -> None:
    from mlmon.integrations.asgi import ShutdownMiddleware
    from mlmon.testing import InMemoryEmitter

    memory = InMemoryEmitter()
    mon = mlmon.Monitor("web_mw_lifespan", emitters=[memory])
    seen_at_answer: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:  # speaks lifespan itself
        assert "lifespan.startup" == (await receive())["type"]
        await send({"type": "lifespan.startup.complete"})
        assert "lifespan.shutdown" == (await receive())["type"]
        await send({"type": "lifespan.shutdown.complete"})

    async def recording_send(message: Any) -> None:
        seen_at_answer.append(len(memory.snapshots))

    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Any:
        return next(incoming)

    asyncio.run(ShutdownMiddleware(app, [mon])({"type": "lifespan"}, receive, recording_send))
    assert [0, 1] == seen_at_answer  # the final snapshot was emitted before the server heard "complete"


def test_the_middleware_speaks_lifespan_for_an_app_that_returns_at_once() -> None:
    from mlmon.integrations.asgi import ShutdownMiddleware

    mon = mlmon.Monitor("web_mw_returns")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    sent = drive_lifespan(ShutdownMiddleware(app, mon), ["lifespan.startup", "lifespan.shutdown"])
    assert ["lifespan.startup.complete", "lifespan.shutdown.complete"] == sent
    assert mon not in list(mlmon.monitor.monitors())


def test_the_middleware_reraises_a_failing_startup_and_still_closes() -> None:
    from mlmon.integrations.asgi import ShutdownMiddleware

    mon = mlmon.Monitor("web_mw_fails")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no model"})
        raise RuntimeError("no model")

    with pytest.raises(RuntimeError, match="no model"):
        drive_lifespan(ShutdownMiddleware(app, mon), ["lifespan.startup"])
    assert mon not in list(mlmon.monitor.monitors())


def test_http_requests_pass_through_the_middleware() -> None:
    from mlmon.integrations.asgi import ShutdownMiddleware

    seen: list[str | None] = []
    sent = run_asgi(ShutdownMiddleware(RequestIdMiddleware(echo_id_app(seen))), http_scope([(b"x-request-id", b"r-9")]))
    assert ["r-9"] == seen and b"ok" == sent[1]["body"]


# --------------------------------------------------------------------------- gunicorn hooks, in-process


def test_worker_exit_in_the_master_leaves_its_monitors_open() -> None:
    import types

    from mlmon.integrations.gunicorn import worker_exit
    from mlmon.testing import InMemoryEmitter

    # Closing in the worker (which closes every monitor of the process) is pinned with real
    # gunicorn in tests/integration/test_shutdown_servers.py; here, the master's call.
    memory = InMemoryEmitter()
    mon = mlmon.Monitor("web_worker_exit", emitters=[memory])
    worker_exit(None, types.SimpleNamespace(pid=os.getpid() + 100_000))  # the master, for a vanished worker
    assert [] == memory.snapshots and mon in list(mlmon.monitor.monitors())
    mon.close()
