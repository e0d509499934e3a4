#!/usr/bin/env bash
# The poisoning lint against real tool definitions (tests/run.sh runs it):
#   benign:   every tool the pinned npm reference servers in package.json
#             offer (live, over stdio: github, gitlab, slack, brave-search,
#             filesystem, everything, memory, sequential-thinking);
#             target: no quarantine-level finding;
#   poisoned: tests/integrity/poisoned.json, our own definitions with the
#             published tricks; target: every tool quarantined.
# Prints a table; exits 1 when a target is missed.
#
#   bash tests/integrity/run.sh [path/to/toolgate]
set -euo pipefail
cd "$(dirname "$0")/../.."
toolgate="${1:-target/debug/toolgate}"
nm="$(bash tests/npm-ci-cached.sh tests/integrity integrity @modelcontextprotocol/server-github | tail -1)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/servers" "$work/data" "$work/files"
cat >"$work/toolgate.toml" <<TOML
data_dir = "$work/data"
TOML
server() { # name bin [args...] -- env lines
  local name="$1" bin="$2"; shift 2
  local args="" env=""
  while [[ $# -gt 0 && "$1" != "--" ]]; do args+="\"$1\", "; shift; done
  [[ $# -gt 0 ]] && shift
  for kv in "$@"; do env+="${kv%%=*} = \"${kv#*=}\", "; done
  cat >"$work/servers/$name.toml" <<TOML
transport = "stdio"
command = "$nm/.bin/$bin"
args = [${args%, }]
env = { ${env%, } }
[timeouts]
connect = "60s"
TOML
}
# Credentials are placeholders: the servers only list their tools here.
server github mcp-server-github -- GITHUB_PERSONAL_ACCESS_TOKEN=placeholder
server gitlab mcp-server-gitlab -- GITLAB_PERSONAL_ACCESS_TOKEN=placeholder GITLAB_API_URL=http://127.0.0.1:9/api/v4
server slack mcp-server-slack -- SLACK_BOT_TOKEN=placeholder SLACK_TEAM_ID=T0 SLACK_CHANNEL_IDS=
server brave mcp-server-brave-search -- BRAVE_API_KEY=placeholder
server filesystem mcp-server-filesystem "$work/files"
server everything mcp-server-everything stdio
server memory mcp-server-memory -- MEMORY_FILE_PATH=$work/memory.jsonl
server thinking mcp-server-sequential-thinking

"$toolgate" --config "$work/toolgate.toml" tools lint --json >"$work/benign.json" || true
"$toolgate" --config "$work/toolgate.toml" tools lint --file tests/integrity/poisoned.json --json >"$work/poisoned.json" || true

python3 - "$work/benign.json" "$work/poisoned.json" <<'PY'
import json, sys
benign = json.load(open(sys.argv[1]))
poisoned = json.load(open(sys.argv[2]))
def worst(findings):
    s = {f["severity"] for f in findings}
    return "quarantine" if "quarantine" in s else "warn" if "warn" in s else "clean"
rows, failed = [], False
down = [s["server"] + ": " + s["down"] for s in benign if s.get("down")]
if down:
    print("servers that could not be listed:\n  " + "\n  ".join(down))
    failed = True
for label, servers, target in (("benign", benign, "clean"), ("poisoned", poisoned, "quarantine")):
    tools = [(s["server"], t, worst(f), f) for s in servers for (t, f) in s["tools"]]
    n = len(tools)
    q = sum(1 for x in tools if x[2] == "quarantine")
    w = sum(1 for x in tools if x[2] == "warn")
    miss = [f"{s}/{t}" for (s, t, v, _) in tools if (v == "quarantine") != (target == "quarantine")]
    rows.append((label, len(servers), n, q, w, len(miss)))
    for s, t, v, f in tools:
        if (v == "quarantine") != (target == "quarantine"):
            failed = True
            print(f"  {label} {s}/{t}: {v}: " + "; ".join(x["rule"] + " at " + x["at"] + ": " + x["message"] for x in f))
    if label == "benign":
        for s, t, v, f in tools:
            if v == "warn":
                print(f"  benign {s}/{t}: warn: " + "; ".join(x["rule"] + ": " + x["message"] for x in f))
print()
print("| set | servers | tools | quarantined | warned only | wrong (false quarantine / missed) |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %d | %d | %d | %d | %d |" % r)
sys.exit(1 if failed else 0)
PY
