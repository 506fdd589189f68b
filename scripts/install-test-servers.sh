#!/usr/bin/env bash
# Install the real daemons that tests/integration runs against (DESIGN.md §6):
#   carbon-cache (graphite-carbon), carbon-c-relay, prometheus + promtool, graphite-web,
#   redis-server + redis-cli (redis-server, redis-tools; single node and cluster fixtures),
#   the StatsD daemon from npm (into .test-servers/, git-ignored) and the `whisper` Python package.
#
# Idempotent and non-interactive; meant to run as root (CI, developer containers).
# The fixtures start every daemon themselves on free loopback ports, so any copy that a
# Debian maintainer script starts on its default port is stopped and disabled here.
#
# Environment:
#   PYTHON             interpreter that runs the tests (default: python3 on PATH)
#   MLMON_STATSD_DIR   npm prefix for the StatsD daemon (default: <repo>/.test-servers)
#   STATSD_VERSION     npm version spec of statsd (default: 0.9.0)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
STATSD_DIR="${MLMON_STATSD_DIR:-$ROOT/.test-servers}"
STATSD_VERSION="${STATSD_VERSION:-0.9.0}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# --- Debian packages --------------------------------------------------------------------------
APT_PACKAGES=(graphite-carbon prometheus prometheus-pushgateway carbon-c-relay graphite-web nodejs npm chromium
    redis-server redis-tools)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
# node may come from elsewhere (nodesource, nvm): only ask apt for it when there is no node.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    filtered=()
    for pkg in "${missing[@]+"${missing[@]}"}"; do
        case "$pkg" in nodejs|npm) ;; *) filtered+=("$pkg") ;; esac
    done
    missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    # Keep maintainer scripts from starting daemons on their default ports while installing.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    restore_policy() {
        if [ "$created_policy" -eq 1 ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
    }
    trap restore_policy EXIT
    if ! as_root apt-get install -y --no-install-recommends "${missing[@]}"; then
        log "apt-get install failed; refreshing package lists once and retrying"
        as_root apt-get update
        as_root apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    restore_policy
    trap - EXIT
else
    log "Debian packages already installed"
fi

# --- no daemon left on its default port -------------------------------------------------------
for svc in carbon-cache carbon-c-relay prometheus prometheus-pushgateway graphite-web redis-server; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
    if [ -x "/etc/init.d/$svc" ]; then
        as_root "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done
if [ -f /etc/default/graphite-carbon ]; then
    as_root sed -i 's/^CARBON_CACHE_ENABLED=.*/CARBON_CACHE_ENABLED=false/' /etc/default/graphite-carbon
fi

# Debian's redis-server unit may have started before this script ran (no policy-rc.d then).
if command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if [ -x /etc/init.d/redis-server ]; then as_root /etc/init.d/redis-server stop >/dev/null 2>&1 || true; fi
fi

# --- redis Python client (the RedisStore tests) ------------------------------------------------
if "$PYTHON" -c 'import redis' >/dev/null 2>&1; then
    log "redis (Python client) importable by $PYTHON"
else
    log "pip install redis for $PYTHON"
    "$PYTHON" -m pip install --quiet 'redis>=5' hiredis
fi

# --- StatsD daemon (npm) ----------------------------------------------------------------------
if [ -f "$STATSD_DIR/node_modules/statsd/stats.js" ]; then
    log "statsd already in $STATSD_DIR"
else
    log "npm install statsd@$STATSD_VERSION into $STATSD_DIR"
    mkdir -p "$STATSD_DIR"
    [ -f "$STATSD_DIR/package.json" ] || printf '{"private": true}\n' >"$STATSD_DIR/package.json"
    # The optional syslog backend is a native addon that would need headers from the network.
    npm install --prefix "$STATSD_DIR" --omit=optional --no-audit --no-fund --no-save \
        "statsd@$STATSD_VERSION"
fi

# --- whisper (reads carbon's .wsp files in the tests) -----------------------------------------
if "$PYTHON" -c 'import whisper' >/dev/null 2>&1; then
    log "whisper importable by $PYTHON"
else
    log "pip install whisper for $PYTHON"
    "$PYTHON" -m pip install --quiet 'whisper>=1.1.8'
fi

# --- versions ---------------------------------------------------------------------------------
log "versions"
first_line() { "$@" 2>&1 | head -n 1 || true; }
echo "carbon-cache    $(dpkg-query -W -f='${Version}' graphite-carbon 2>/dev/null || echo missing)"
echo "carbon-c-relay  $(first_line carbon-c-relay -v)"
echo "graphite-web    $(dpkg-query -W -f='${Version}' graphite-web 2>/dev/null || echo missing)"
echo "prometheus      $(first_line prometheus --version)"
echo "promtool        $(first_line promtool --version)"
echo "pushgateway     $(first_line prometheus-pushgateway --version)"
echo "node            $(first_line node --version)"
echo "statsd          $(node -p "require('$STATSD_DIR/node_modules/statsd/package.json').version" 2>/dev/null || echo missing)"
echo "redis-server    $(first_line redis-server --version)"
echo "redis-cli       $(first_line redis-cli --version)"
echo "redis (python)  $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("redis"))' 2>/dev/null || echo missing)"
echo "whisper         $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("whisper"))' 2>/dev/null || echo missing)"
