"""Configuration from the environment: the kill switch, emitters given as URLs, model identity.

Variables (docs/configuration.md states the precedence over code):

* ``MLMON_DISABLED``: ``1``/``true``/``yes``/``on`` turns tracking off in this process
  (``track`` returns the function unchanged, the ``with`` form records nothing); ``0``/``false``/
  ``no``/``off`` or empty leaves it on. It wins over everything the code says.
* ``MLMON_EMITTERS``: comma-separated emitter URLs (:func:`emitter_from_url`), used by
  ``mlmon.configure()`` when the code passes no ``emitters``.
* ``MLMON_MODEL``, ``MLMON_MODEL_VERSION``: the model name and version ``configure()`` uses
  when the code passes none.

A malformed value is a ``ValueError`` naming the variable, raised where the configuration is
read (``configure()``, a ``track`` decoration, :func:`emitters_from_env`), never on a call of
the tracked function.

>>> [type(e).__name__ for e in emitters_from_env({"MLMON_EMITTERS": "console://, jsonl://stdout"})]
['ConsoleEmitter', 'JsonlEmitter']
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mlmon.emitters.base import Emitter, emitter_name

__all__ = [
    "DISABLED",
    "EMITTERS",
    "MODEL",
    "MODEL_VERSION",
    "emitter_from_url",
    "emitters_from_env",
    "kill_switch",
    "model_from_env",
    "version_from_env",
]

DISABLED = "MLMON_DISABLED"
EMITTERS = "MLMON_EMITTERS"
MODEL = "MLMON_MODEL"
MODEL_VERSION = "MLMON_MODEL_VERSION"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
_MODEL_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _flag(environ: Mapping[str, str], var: str) -> bool:
    raw = environ.get(var, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{var} must be 1/true/yes/on or 0/false/no/off (or unset), got {raw!r}")


def _initial() -> bool:
    try:
        return _flag(os.environ, DISABLED)
    except ValueError:
        return False  # reported by the next kill_switch() call, where a ValueError may be raised


KILLED: bool = _initial()
"""The kill switch as last read (at import, then at each :func:`kill_switch` call): what the
``with mon.track()`` form checks on every call, for the price of one attribute lookup."""


def kill_switch(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``MLMON_DISABLED`` turns mlmon off; reads the environment now.

    ``configure()`` and every ``track`` decoration call it, so a value set before them is
    honoured; the ``with`` form uses the value last read (:data:`KILLED`).

    Raises:
        ValueError: the value is not one of the accepted words, naming ``MLMON_DISABLED``.

    >>> kill_switch({"MLMON_DISABLED": "1"}), kill_switch({})
    (True, False)
    >>> kill_switch({"MLMON_DISABLED": "maybe"})
    Traceback (most recent call last):
    ...
    ValueError: MLMON_DISABLED must be 1/true/yes/on or 0/false/no/off (or unset), got 'maybe'
    """
    global KILLED
    live = environ is None
    value = _flag(os.environ if environ is None else environ, DISABLED)
    if live:
        KILLED = value
    return value


def model_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``MLMON_MODEL`` (``[A-Za-z0-9_-]+``), or None when unset or empty.

    >>> model_from_env({"MLMON_MODEL": "fraud"}), model_from_env({})
    ('fraud', None)
    """
    env = os.environ if environ is None else environ
    raw = env.get(MODEL, "")
    if not raw:
        return None
    if not _MODEL_RE.match(raw):
        raise ValueError(f"{MODEL} must match [A-Za-z0-9_-]+, got {raw!r}")
    return raw


def version_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``MLMON_MODEL_VERSION`` (one line), or None when unset or empty.

    >>> version_from_env({"MLMON_MODEL_VERSION": "2024-06-01"})
    '2024-06-01'
    """
    env = os.environ if environ is None else environ
    raw = env.get(MODEL_VERSION, "")
    if not raw:
        return None
    if raw != raw.strip() or any(c in raw for c in "\r\n\x00"):
        raise ValueError(
            f"{MODEL_VERSION} must be one line without surrounding blanks, got {raw!r}"
        )
    return raw


# --------------------------------------------------------------------------- URL → emitter

Conv = Callable[[str], Any]


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE - {""}:
        return False
    raise ValueError(f"expected 1/true/yes/on or 0/false/no/off, got {text!r}")


def _timings(text: str) -> bool | float:
    try:
        return _bool(text)
    except ValueError:
        return float(text)


def _str(text: str) -> str:
    return text


# Query options each scheme accepts, with how a value is read; anything else is refused.
_COMMON: dict[str, Conv] = {"name": _str, "timeout": float}
_OPTIONS: dict[str, dict[str, Conv]] = {
    "statsd": {
        **_COMMON, "prefix": _str, "protocol": _str, "tags": _str, "timings": _timings,
        "max_packet": int, "instance_in_path": _bool, "version_in_path": _bool,
    },
    "graphite": {
        **_COMMON, "prefix": _str, "protocol": _str, "tags": _bool, "buffer_lines": int,
        "instance_in_path": _bool, "version_in_path": _bool,
    },
    "prometheus": {"name": _str, "push_url": _str, "job": _str, "push_timeout": float,
                   "push_delete_on_close": _bool},
    "otlp": {**_COMMON, "service_name": _str},
    "jsonl": {**_COMMON, "max_bytes": int, "backups": int},
    "console": dict(_COMMON),
}  # fmt: skip
_SCHEMES = ("statsd", "graphite", "prometheus", "otlp", "otlp+http", "otlp+https", "jsonl", "console")


def _options(scheme: str, query: str) -> dict[str, Any]:
    known = _OPTIONS[scheme]
    out: dict[str, Any] = {}
    for key, text in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in known:
            raise ValueError(
                f"unknown option {key!r} for {scheme}:// (known: {', '.join(sorted(known))})"
            )
        if key in out:
            raise ValueError(f"option {key!r} is given twice")
        try:
            out[key] = known[key](text)
        except ValueError:
            raise ValueError(f"option {key}={text!r} is not valid") from None
    return out


def _host_port(parts: Any, default_port: int | None) -> tuple[str | None, int | None]:
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number in 0..65535") from None
    host = parts.hostname
    return host, port if port is not None else default_port


def _build(url: str) -> Emitter:
    if not isinstance(url, str) or not url.strip():
        raise ValueError("an emitter URL must be a non-empty string")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or "://" not in url:
        raise ValueError(
            "not an emitter URL (schemes: "
            + ", ".join(f"{s}://" for s in _SCHEMES)
            + ")"
        )
    if parts.fragment:
        raise ValueError("a fragment (#...) means nothing in an emitter URL")
    base = "otlp" if scheme.startswith("otlp") else scheme
    opts = _options(base, parts.query)
    if base in ("statsd", "graphite", "prometheus"):
        default = {"statsd": 8125, "graphite": None, "prometheus": 9464}[base]
        host, port = _host_port(parts, default)
        if not host:
            raise ValueError(f"needs a host ({base}://host:port)")
        if base == "statsd":
            if parts.path not in ("", "/"):
                raise ValueError("a statsd URL has no path")
            from mlmon.emitters.statsd import StatsdEmitter

            return StatsdEmitter(host, port if port is not None else 8125, **opts)
        if base == "graphite":
            if parts.path not in ("", "/"):
                raise ValueError("a graphite URL has no path")
            from mlmon.emitters.graphite import GraphiteEmitter

            return GraphiteEmitter(host, port, **opts)
        from mlmon.emitters.prometheus import PrometheusEmitter

        path = parts.path or "/metrics"
        return PrometheusEmitter(host, port if port is not None else 9464, path, **opts)
    if base == "otlp":
        from mlmon.emitters.otlp import OtlpEmitter

        endpoint: str | None = None
        if parts.netloc:
            _host_port(parts, None)  # checks the port
            transport = "https" if scheme == "otlp+https" else "http"
            endpoint = f"{transport}://{parts.netloc}{parts.path or '/v1/metrics'}"
        elif parts.path not in ("", "/"):
            raise ValueError("give otlp://host:port[/path] or otlp://")
        return OtlpEmitter(endpoint, **opts)
    if base == "jsonl":
        from mlmon.emitters.jsonl import JsonlEmitter

        if parts.netloc in ("stdout", "stderr") and parts.path in ("", "/"):
            return JsonlEmitter(sys.stdout if parts.netloc == "stdout" else sys.stderr, **opts)
        if parts.netloc or not parts.path or parts.path.endswith("/"):
            raise ValueError(
                "give jsonl:///absolute/path.jsonl, jsonl://stdout or jsonl://stderr"
            )
        return JsonlEmitter(unquote(parts.path), **opts)
    from mlmon.emitters.console import ConsoleEmitter

    if parts.netloc not in ("", "stdout", "stderr") or parts.path not in ("", "/"):
        raise ValueError("give console://, console://stdout or console://stderr")
    return ConsoleEmitter(sys.stderr if parts.netloc == "stderr" else None, **opts)


def emitter_from_url(url: str, *, source: str = "url") -> Emitter:
    """Build one emitter from a URL.

    ============================================  =============================================
    ``statsd://host[:8125][?prefix=ml&...]``      :class:`~mlmon.emitters.StatsdEmitter`
    ``graphite://host[:2003][?prefix=ml&...]``    :class:`~mlmon.emitters.GraphiteEmitter`
    ``prometheus://host[:9464][/metrics][?...]``  :class:`~mlmon.emitters.PrometheusEmitter`
    ``otlp://host:4318[/v1/metrics]``, ``otlp://``  :class:`~mlmon.emitters.OtlpEmitter`
    ``jsonl:///abs/path.jsonl``, ``jsonl://stdout``  :class:`~mlmon.emitters.JsonlEmitter`
    ``console://``, ``console://stderr``          :class:`~mlmon.emitters.ConsoleEmitter`
    ============================================  =============================================

    Query options are the emitters' keyword arguments (``name``, ``timeout``, ``prefix``,
    ``protocol``, ``tags``, ...; docs/configuration.md lists them); ``otlp://`` without a host
    leaves the endpoint to the ``OTEL_EXPORTER_OTLP_*`` variables, ``otlp+https://`` uses TLS.

    Raises:
        ValueError: naming ``source`` (the variable the URL came from), for an unknown scheme
            or option, a bad port or value, or what the emitter itself refuses.

    >>> em = emitter_from_url("statsd://127.0.0.1:8125?prefix=ml&protocol=udp")
    >>> type(em).__name__, em.prefix
    ('StatsdEmitter', 'ml')
    >>> em.close()
    >>> emitter_from_url("statsd://127.0.0.1:8125?prefx=ml", source="MLMON_EMITTERS")
    Traceback (most recent call last):
    ...
    ValueError: MLMON_EMITTERS: 'statsd://127.0.0.1:8125?prefx=ml': unknown option 'prefx' for statsd:// (known: ...)
    """
    try:
        return _build(url)
    except ValueError as exc:
        raise ValueError(f"{source}: {url!r}: {exc}") from exc


def emitters_from_env(environ: Mapping[str, str] | None = None) -> list[Emitter]:
    """The emitters ``MLMON_EMITTERS`` names (comma separated URLs); ``[]`` when unset.

    Emitter names must be unique: give a second emitter of one kind ``?name=...``. When one URL
    is refused, the emitters already built from the others are closed before the error.

    >>> ems = emitters_from_env({"MLMON_EMITTERS": "console://,jsonl://stderr?name=log"})
    >>> [e.name for e in ems]
    ['console', 'log']
    >>> emitters_from_env({"MLMON_EMITTERS": "console://,console://"})
    Traceback (most recent call last):
    ...
    ValueError: MLMON_EMITTERS: two emitters are named 'console': add ?name=... to one of them
    """
    env = os.environ if environ is None else environ
    raw = env.get(EMITTERS, "")
    urls = [u.strip() for u in raw.split(",")]
    if not raw.strip():
        return []
    built: list[Emitter] = []
    try:
        for url in urls:
            if not url:
                raise ValueError(f"{EMITTERS}: an empty entry in {raw!r}")
            em = emitter_from_url(url, source=EMITTERS)
            built.append(em)
            names = [emitter_name(e) for e in built]
            if names.count(names[-1]) > 1:
                raise ValueError(
                    f"{EMITTERS}: two emitters are named {names[-1]!r}: add ?name=... to one of them"
                )
    except BaseException:
        for em in built:
            try:
                em.close()
            except Exception:
                pass
        raise
    return built
