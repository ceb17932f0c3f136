#!/usr/bin/env bash
# bench/serve.sh MODEL_DIR [loadtest.py options]: starts `distill serve MODEL_DIR` on a free port, waits for
# /health, runs bench/loadtest.py against it, then stops the server with SIGTERM (its exit status must be 0).
# Server flags go in SERVE_ARGS (e.g. SERVE_ARGS="--max-batch 64 --max-wait-ms 5"); the binary is
# target/release/distill (`cargo build --release -p distill`) unless DISTILL_BIN names another.
# Run it on an otherwise idle machine: the clients share the CPU with the server.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:?usage: bench/serve.sh MODEL_DIR [loadtest.py options]}"
shift
BIN="${DISTILL_BIN:-target/release/distill}"
PY="${PYTHON:-python3}"
[ -x "$BIN" ] || { echo "$BIN: not built (cargo build --release -p distill)" >&2; exit 1; }
LOG="$(mktemp -d)"
# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
"$BIN" serve "$MODEL" --port 0 ${SERVE_ARGS:-} >"$LOG/stdout" 2>"$LOG/stderr" &
PID=$!
stop() {
    if kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"
        local rc=0
        wait "$PID" || rc=$?
        echo "server stopped by SIGTERM: exit status $rc" >&2
        [ "$rc" -eq 0 ] || { cat "$LOG/stderr" >&2; return 1; }
    fi
}
trap stop EXIT

# The server prints `listening on http://ADDR` once it has loaded the model and bound the port.
URL=""
for _ in $(seq 600); do
    URL="$(sed -n 's/^listening on //p' "$LOG/stdout")"
    [ -n "$URL" ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$LOG/stderr" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "server did not start within 60 s" >&2; exit 1; }
"$PY" - "$URL" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        with urllib.request.urlopen(sys.argv[1] + "/health", timeout=5) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(f"{sys.argv[1]}/health: no answer")
PY
echo "server $URL ($MODEL, pid $PID)" >&2
"$PY" bench/loadtest.py --url "$URL" "$@"
