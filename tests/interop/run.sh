#!/usr/bin/env bash
# Interop tests: toolgate against MCP software nobody here wrote.
#
#   tests/interop/run.sh [TOOLGATE_BINARY]     (default target/debug/toolgate)
#
# Starts `toolgate serve` (a fresh data dir: it prints a first admin API key,
# which every HTTP client below sends) on a free 127.0.0.1 port with three upstreams: npm
# @modelcontextprotocol/server-everything (stdio), PyPI mcp-server-time (stdio)
# and toolgate's own `notes` reference server. Then drives it with
#   - the official Python SDK (PyPI `mcp`): client_test.py, over streamable HTTP
#     and over `toolgate stdio`, in both protocol eras (2025-11-25 sessions via
#     initialize, 2026-07-28 stateless via server/discover);
#   - the MCP Inspector CLI (npm @modelcontextprotocol/inspector), both eras.
# Finally it stops the gateway and checks no process it started is left over.
#
# Pinned tools install once into ${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/interop
# (npm ci from package-lock.json; a venv from requirements.txt) and are
# reinstalled only when those files change. Needs node/npm (20+) and python3
# (3.10+) on PATH.
#
# Environment:
#   TOOLGATE_CACHE   cache root (default ~/.cache/toolgate)
#   PYTHON           interpreter for the venv (default python3)
#   INTEROP_STRICT=1 ignore known-failures.txt (every failure fails)
#   INTEROP_KEEP=1   keep the temp dir (config, logs) after the run
#
# Prints PASS/FAIL/XFAIL/XPASS per check and a summary; exits 0 only when no
# check FAILed or XPASSed (a known failure that passes: remove it from
# known-failures.txt).
set -euo pipefail

started_at=$(date +%s)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

toolgate="${1:-target/debug/toolgate}"
if [[ ! -x "$toolgate" ]]; then
  echo "interop: toolgate binary not found or not executable: $toolgate" >&2
  exit 2
fi
toolgate="$(cd "$(dirname "$toolgate")" && pwd)/$(basename "$toolgate")"

cache="${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/interop"
npm_dir="$cache/npm"
python="${PYTHON:-python3}"
known_failures="$here/known-failures.txt"
[[ "${INTEROP_STRICT:-0}" == 1 ]] && known_failures=""

export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

tmp="$(mktemp -d "${TMPDIR:-/tmp}/toolgate-interop.XXXXXX")"
results="$tmp/results.tsv"
: >"$results"
# Every process this run starts carries this marker in its environment, so the
# leak check (and the exit trap) can find exactly those and nothing else.
run_id="interop-$$-$RANDOM$RANDOM"
gateway_pid=""
api_key=""

log() { printf 'interop: %s\n' "$*" >&2; }

# record STATUS ID [DETAIL]; a FAIL of a check listed in known-failures.txt
# becomes XFAIL, a PASS of one becomes XPASS (unless it is tagged `flaky`).
record() {
  local status="$1" id="$2" detail="${3:-}" entry=""
  if [[ -n "$known_failures" ]]; then
    entry="$(sed 's/#.*//' "$known_failures" | awk -v id="$id" '$1 == id { print "listed"; for (i = 2; i <= NF; i++) print $i }')"
  fi
  if [[ -n "$entry" ]]; then
    case "$status" in
      FAIL) status=XFAIL ;;
      PASS) grep -qx flaky <<<"$entry" || { status=XPASS; detail="listed in known-failures.txt but passes now"; } ;;
    esac
  fi
  printf '%-5s %s%s\n' "$status" "$id" "${detail:+  $detail}"
  printf '%s\t%s\t%s\n' "$status" "$id" "$detail" >>"$results"
}

# PIDs of live processes carrying this run's marker.
marked_pids() {
  local d pid
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    [[ "$pid" == "$$" ]] && continue
    if { tr '\0' '\n' <"$d/environ"; } 2>/dev/null | grep -qxF "TOOLGATE_INTEROP_RUN=$run_id"; then
      echo "$pid"
    fi
  done
}

kill_marked() {
  local pids
  pids="$(marked_pids)"
  [[ -z "$pids" ]] && return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 20); do
    pids="$(marked_pids)"
    [[ -z "$pids" ]] && return 0
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$gateway_pid" ]] && kill -0 "$gateway_pid" 2>/dev/null; then
    kill -TERM "$gateway_pid" 2>/dev/null || true
  fi
  kill_marked
  if [[ "${INTEROP_KEEP:-0}" == 1 ]]; then
    log "kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "RESULT: FAIL (interrupted)"; exit 130' INT
trap 'echo "RESULT: FAIL (terminated)"; exit 143' TERM

sha() { cat "$@" | sha256sum | cut -d' ' -f1; }
strip_ansi() { sed 's/\x1b\[[0-9;]*m//g'; }

# ─── install pinned tools (once) ─────────────────────────────────────────────
install_npm() {
  local want have=""
  want="$(sha "$here/package.json" "$here/package-lock.json") $(node --version)"
  [[ -f "$npm_dir/.installed" ]] && have="$(cat "$npm_dir/.installed")"
  if [[ "$have" == "$want" && -x "$npm_dir/node_modules/.bin/mcp-server-everything" ]]; then
    return 0
  fi
  log "npm ci (server-everything, inspector) into $npm_dir"
  # (Called in an `||` list, where set -e is off: check each step.)
  mkdir -p "$npm_dir" || return 1
  rm -rf "$npm_dir/node_modules" "$npm_dir/.installed" || return 1
  cp "$here/package.json" "$here/package-lock.json" "$npm_dir/" || return 1
  # No install scripts: none of these packages needs one to run.
  (cd "$npm_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2 || return 1
  echo "$want" >"$npm_dir/.installed"
}

install_venv() {
  local pyver want have=""
  pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
    log "$python is $pyver; the mcp SDK needs Python 3.10+"
    return 1
  }
  venv="$cache/venv-py$pyver"
  want="$(sha "$here/requirements.txt") $("$python" -c 'import sys; print(sys.version)' | head -n1)"
  [[ -f "$venv/.installed" ]] && have="$(cat "$venv/.installed")"
  if [[ "$have" == "$want" && -x "$venv/bin/python" ]]; then
    return 0
  fi
  log "pip install -r requirements.txt into $venv"
  rm -rf "$venv" || return 1
  "$python" -m venv "$venv" || return 1
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
    -r "$here/requirements.txt" >&2 || return 1
  "$venv/bin/python" -c 'import mcp, mcp_server_time' >&2 || return 1
  echo "$want" >"$venv/.installed"
}

venv=""
mkdir -p "$cache"
setup_ok=1
{
  # One installer at a time per cache (parallel runs share it).
  if command -v flock >/dev/null; then
    exec 9>"$cache/.lock"
    flock 9
  fi
  install_npm || { record FAIL setup/npm-install "npm ci failed"; setup_ok=0; }
  install_venv || { record FAIL setup/python-venv "venv install failed"; setup_ok=0; }
  if command -v flock >/dev/null; then
    flock -u 9
    exec 9>&-
  fi
}
installed_at=$(date +%s)

# ─── config and gateway ──────────────────────────────────────────────────────
start_gateway() {
  port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  url="http://127.0.0.1:$port/mcp"
  mkdir -p "$tmp/servers" "$tmp/policies"
  # Protocol tests, not policy tests: the repository's schema, allow-all.
  cp "$here/../../policies/schema.cedarschema" "$tmp/policies/"
  printf '@id("interop-allow-all")\npermit (principal, action, resource);\n' >"$tmp/policies/allow-all.cedar"
  # One user-confirmation gate, for the elicitation of toolgate's own.
  cat >"$tmp/policies/confirm-gate.cedar" <<'CEDAR'
@id("interop-confirm-echo")
@confirm("Echo this message?")
permit (principal, action == Action::"call_tool", resource == Tool::"everything__echo")
when { context.args has message && context.args.message like "*confirm*" };
CEDAR
  cat >"$tmp/toolgate.toml" <<EOF
listen = "127.0.0.1:$port"
servers_dir = "servers"
policies_dir = "policies"
EOF
  cat >"$tmp/servers/everything.toml" <<EOF
name = "everything"
transport = "stdio"
command = "$npm_dir/node_modules/.bin/mcp-server-everything"
args = ["stdio"]
[timeouts]
connect = "60s"
call = "30s"
EOF
  cat >"$tmp/servers/time.toml" <<EOF
name = "time"
transport = "stdio"
command = "$venv/bin/python"
args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]
[timeouts]
connect = "60s"
call = "30s"
EOF
  cat >"$tmp/servers/notes.toml" <<EOF
name = "notes"
transport = "stdio"
command = "\${self}"
args = ["reference", "notes"]
[timeouts]
connect = "30s"
call = "30s"
EOF

  TOOLGATE_INTEROP_RUN="$run_id" RUST_LOG="${RUST_LOG:-info}" \
    "$toolgate" serve --config "$tmp/toolgate.toml" >"$tmp/toolgate.log" 2>&1 &
  gateway_pid=$!

  local deadline=$((SECONDS + 120)) body=""
  while ((SECONDS < deadline)); do
    if ! kill -0 "$gateway_pid" 2>/dev/null; then
      log "toolgate exited before it was ready; its log:"
      tail -n 40 "$tmp/toolgate.log" >&2
      return 1
    fi
    body="$(curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null || true)"
    if [[ -n "$body" ]] && READYZ="$body" "$python" - <<'EOF'
import json, os, sys
d = json.loads(os.environ["READYZ"])
states = {u["name"]: u.get("health", {}).get("state") for u in d.get("upstreams", [])}
sys.exit(0 if all(states.get(n) == "ready" for n in ("everything", "time", "notes")) else 1)
EOF
    then
      log "gateway ready at $url after $((SECONDS - gateway_started))s"
      # A fresh data dir: the first start printed an admin API key once.
      api_key="$(grep -o 'tgk_[0-9a-f]*_[0-9a-f]*' "$tmp/toolgate.log" | head -n1)"
      if [[ -z "$api_key" ]]; then
        log "toolgate printed no first admin key; its log:"
        tail -n 40 "$tmp/toolgate.log" >&2
        return 1
      fi
      return 0
    fi
    sleep 0.25
  done
  log "upstreams not all ready after 120 s; last /readyz: ${body:-<none>}"
  tail -n 40 "$tmp/toolgate.log" >&2
  return 1
}

# ─── Python SDK ──────────────────────────────────────────────────────────────
run_python() {
  local rc=0 extra=()
  [[ -n "$known_failures" ]] && extra=(--known-failures "$known_failures")
  TOOLGATE_INTEROP_RUN="$run_id" TOOLGATE_INTEROP_KEY="$api_key" "$venv/bin/python" "$here/client_test.py" \
    --url "$url" --toolgate "$toolgate" --config "$tmp/toolgate.toml" \
    --results "$results" "${extra[@]}" \
    --stdio-log "$tmp/toolgate-stdio.log" 2>"$tmp/python-client.log" &
  # (In the background + wait, so a signal to this script is handled at once.)
  wait $! || rc=$?
  # A crash before any result (import error, bad args) is a failure too.
  if ((rc != 0)) && ! grep -q $'^\\(FAIL\\|XPASS\\)\tpython/' "$results"; then
    record FAIL python/client_test "client_test.py exited $rc; see its log below"
    tail -n 30 "$tmp/python-client.log" >&2
  fi
}

# ─── MCP Inspector CLI ───────────────────────────────────────────────────────
inspector() {
  # HOME points at the temp dir: the inspector keeps a catalog and client
  # config under ~/.mcp-inspector, which a test must not touch.
  (cd "$npm_dir" && HOME="$tmp/inspector-home" TOOLGATE_INTEROP_RUN="$run_id" \
    timeout 60 npx --no-install @modelcontextprotocol/inspector --cli "$url" \
      --header "Authorization: Bearer $api_key" "$@")
}

# inspector_check ID PYTHON_ASSERTION -- INSPECTOR_ARGS...: the assertion runs
# with `out` (stdout text) and `data` (stdout parsed as JSON, or None).
inspector_check() {
  local id="$1" assertion="$2"
  shift 3
  local out="$tmp/inspector.out" err="$tmp/inspector.err" rc=0
  inspector "$@" >"$out" 2>"$err" &
  wait $! || rc=$?
  local why
  if why="$(ASSERTION="$assertion" RC="$rc" "$python" - "$out" <<'EOF'
import json, os, sys
out = open(sys.argv[1]).read()
try:
    data = json.loads(out)
except ValueError:
    data = None
rc = int(os.environ["RC"])
if rc != 0:
    print(f"exit {rc}: {' '.join(out.split())[:300]}")
    sys.exit(1)
try:
    ok = eval(os.environ["ASSERTION"], {"out": out, "data": data})
except Exception as e:
    ok = False
    print(f"{type(e).__name__}: {e}; ", end="")
if not ok:
    print(f"assertion failed: {os.environ['ASSERTION']}; output: {' '.join(out.split())[:300]}")
    sys.exit(1)
EOF
  )"; then
    record PASS "$id"
  else
    [[ -s "$err" ]] && why="$why; stderr: $({ grep -v '^npm warn' "$err" || true; } | tr '\n' ' ' | cut -c1-200)"
    record FAIL "$id" "$why"
  fi
}

run_inspector() {
  local era
  for era in legacy modern; do
    local label="$era"
    [[ "$era" == modern ]] && label="2026-07-28"
    inspector_check "inspector/$label/tools_list" \
      'all(any(t["name"] == n for t in data["tools"]) for n in ("everything__echo", "time__get_current_time", "notes__add_note"))' \
      -- --protocol-era "$era" --method tools/list
    inspector_check "inspector/$label/tools_call_echo" \
      'data["content"][0]["text"] == "Echo: hi" and not data.get("isError")' \
      -- --protocol-era "$era" --method tools/call --tool-name everything__echo --tool-arg message=hi
    inspector_check "inspector/$label/prompts_get" \
      '"Lisbon" in data["messages"][0]["content"]["text"]' \
      -- --protocol-era "$era" --method prompts/get --prompt-name everything__args-prompt --prompt-args city=Lisbon
    inspector_check "inspector/$label/resources_read" \
      'data["contents"][0]["uri"] == "everything+demo://resource/static/document/startup.md" and "Startup" in data["contents"][0]["text"]' \
      -- --protocol-era "$era" --method resources/read --uri everything+demo://resource/static/document/startup.md
  done
}

# ─── shutdown: the gateway stops its upstreams ───────────────────────────────
stop_gateway() {
  kill -TERM "$gateway_pid" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while kill -0 "$gateway_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$gateway_pid" 2>/dev/null; then
    record FAIL shutdown/gateway-exits "toolgate still running 15 s after SIGTERM"
    return
  fi
  local code=0
  wait "$gateway_pid" 2>/dev/null || code=$?
  gateway_pid=""
  # Give the upstreams a moment to see their stdin close.
  local left=""
  for _ in $(seq 1 30); do
    left="$(marked_pids)"
    [[ -z "$left" ]] && break
    sleep 0.1
  done
  if [[ -n "$left" ]]; then
    local what
    what="$(for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120; echo; done | sed '/^$/d' | paste -sd';')"
    record FAIL shutdown/no-leftover-processes "still running after toolgate exited: $what"
    kill_marked
  else
    record PASS shutdown/no-leftover-processes
  fi
  # 143 = killed by SIGTERM without handling it; 0 = handled it and exited.
  if [[ "$code" == 0 || "$code" == 143 ]]; then
    record PASS shutdown/gateway-exits
  else
    record FAIL shutdown/gateway-exits "exit status $code after SIGTERM"
  fi
}

# ─── main ────────────────────────────────────────────────────────────────────
gateway_started=$SECONDS
if ((setup_ok)); then
  if start_gateway; then
    record PASS setup/gateway-ready
    # Deny by default: without the key, a client gets 401 and a challenge.
    status="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
      -H 'Accept: application/json, text/event-stream' --data '{"jsonrpc":"2.0","id":1,"method":"ping"}' "$url")"
    if [[ "$status" == 401 ]]; then
      record PASS http/no-credential-refused
    else
      record FAIL http/no-credential-refused "POST /mcp without a key: HTTP $status, want 401"
    fi
    run_python
    run_inspector
    stop_gateway
  else
    record FAIL setup/gateway-ready "see the log above"
  fi
fi

# ─── summary ─────────────────────────────────────────────────────────────────
count() { grep -c "^$1"$'\t' "$results" || true; }
pass=$(count PASS) fail=$(count FAIL) xfail=$(count XFAIL) xpass=$(count XPASS)
finished_at=$(date +%s)
echo
echo "════ toolgate interop summary ════"
echo "gateway: $toolgate"
echo "time: $((finished_at - started_at)) s (installs $((installed_at - started_at)) s)"
if ((xfail > 0)); then
  echo "known failures (XFAIL, listed in tests/interop/known-failures.txt): $xfail"
  grep $'^XFAIL\t' "$results" | cut -f2 | sed 's/^/  - /'
fi
if ((fail + xpass > 0)); then
  echo "FAILED:"
  grep -E $'^(FAIL|XPASS)\t' "$results" | awk -F'\t' '{printf "  - %s %s: %s\n", $1, $2, $3}'
  # Skip the SDK's known noise: rmcp answers DELETE with 202, the SDK wants 200/204.
  if grep -qv 'Session termination failed: 202' "$tmp/python-client.log" 2>/dev/null; then
    echo "--- python client stderr (last 20 lines) ---"
    grep -v 'Session termination failed: 202' "$tmp/python-client.log" | tail -n 20
  fi
  if grep -qE ' (WARN|ERROR) ' <(strip_ansi <"$tmp/toolgate.log" 2>/dev/null); then
    echo "--- toolgate warnings and errors (last 20) ---"
    strip_ansi <"$tmp/toolgate.log" | grep -E ' (WARN|ERROR) ' | tail -n 20 | cut -c1-300
  fi
  [[ "${INTEROP_KEEP:-0}" == 1 ]] || echo "(INTEROP_KEEP=1 keeps the full logs)"
  echo "RESULT: FAIL"
else
  echo "RESULT: PASS"
fi
echo "interop: $pass passed, $((fail + xpass)) failed"
((fail + xpass == 0))
