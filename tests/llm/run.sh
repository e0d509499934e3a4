#!/usr/bin/env bash
# The LLM gateway against software nobody here wrote (tests/run.sh runs it):
#   - the `openai` and `anthropic` Python SDKs (PyPI, pinned) as callers:
#     chat streamed and not, tools, embeddings, models, refusals, fallback,
#     a 429 passed on with Retry-After; Messages translated and native;
#   - the OpenAI Agents SDK running one agent turn with toolgate as its
#     model endpoint (Responses API) and its MCP server;
#   - LiteLLM's proxy (`litellm[proxy]`, mock_response models) as a target.
# Providers are `toolgate reference llm` processes (one well, one failing
# with 500s, one with 429s and Retry-After) and LiteLLM, all on 127.0.0.1.
#
#   bash tests/llm/run.sh [path/to/toolgate]
#
# The venv installs once into ${TOOLGATE_CACHE:-~/.cache/toolgate}/llm and
# again only when requirements.txt changes. LLM_KEEP=1 keeps the temp dir.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
toolgate="${1:-target/debug/toolgate}"
toolgate="$(cd "$(dirname "$toolgate")" && pwd)/$(basename "$toolgate")"
python="${PYTHON:-python3}"
cache="${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/llm"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/toolgate-llm.XXXXXX")"
pids=()
log() { printf 'llm: %s\n' "$*" >&2; }

cleanup() {
  local rc=$?
  trap - EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ "${LLM_KEEP:-0}" == 1 ]]; then log "kept $tmp"; else rm -rf "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT

# ─── the venv (once) ─────────────────────────────────────────────────────────
mkdir -p "$cache"
venv="$cache/venv"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
if [[ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]]; then
  exec 9>"$cache/.lock"; flock 9
  if [[ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]]; then
    log "pip install -r requirements.txt into $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$here/requirements.txt" >&2
    echo "$want" >"$venv/.installed"
  fi
  flock -u 9; exec 9>&-
fi

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # url what
  for _ in $(seq 1 600); do
    curl -fsS --max-time 1 -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  log "$2 did not come up at $1"; return 1
}

# ─── providers ───────────────────────────────────────────────────────────────
ref=$(free_port); broken=$(free_port); limited=$(free_port); lite=$(free_port); port=$(free_port)
"$toolgate" reference llm --http "127.0.0.1:$ref" >"$tmp/ref.log" 2>&1 & pids+=($!)
"$toolgate" reference llm --http "127.0.0.1:$broken" --fail-rate 1 >"$tmp/broken.log" 2>&1 & pids+=($!)
"$toolgate" reference llm --http "127.0.0.1:$limited" --fail-rate 1 --fail-status 429 --retry-after 7 \
  >"$tmp/limited.log" 2>&1 & pids+=($!)
cat >"$tmp/litellm.yaml" <<YAML
model_list:
  - model_name: mock-gpt
    litellm_params:
      model: openai/mock-gpt
      api_key: unused
      mock_response: "Hello from LiteLLM"
general_settings:
  master_key: sk-litellm-master
litellm_settings:
  telemetry: false
YAML
LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False "$venv/bin/litellm" \
  --config "$tmp/litellm.yaml" --host 127.0.0.1 --port "$lite" --num_workers 1 \
  >"$tmp/litellm.log" 2>&1 & pids+=($!)

# ─── the gateway ─────────────────────────────────────────────────────────────
mkdir -p "$tmp/servers" "$tmp/policies" "$tmp/data"
cp "$here/../../policies/schema.cedarschema" "$tmp/policies/"
cat >"$tmp/policies/llm.cedar" <<'CEDAR'
@id("allow-all")
permit (principal, action, resource);

@id("no-secret-model")
forbid (principal, action == Action::"chat", resource == Model::"secret");

@id("short-answers")
@reason("answers are capped at 1000 tokens")
forbid (principal, action == Action::"chat", resource)
when { context has request && context.request has max_tokens && context.request.max_tokens > 1000 };
CEDAR
cat >"$tmp/servers/clock.toml" <<'TOML'
name = "clock"
transport = "stdio"
command = "${self}"
args = ["reference", "clock"]
[tools]
allow = ["now"]
TOML
cat >"$tmp/toolgate.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "data"

[llm.retry]
backoff = "10ms"

[llm.providers.ref]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$ref/v1"
responses = true

[llm.providers.broken]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$broken/v1"

[llm.providers.limited]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$limited/v1"

[llm.providers.claude]
kind = "anthropic"
base_url = "http://127.0.0.1:$ref/v1"
api_key = "sk-reference"

[llm.providers.litellm]
kind = "openai-compatible"
base_url = "http://127.0.0.1:$lite/v1"
api_key = "sk-litellm-master"

[llm.models.fast]
targets = [{ provider = "ref", model = "ref-small" }]
[llm.models.secret]
targets = [{ provider = "ref", model = "ref-large" }]
[llm.models.agentic]
targets = [{ provider = "ref", model = "ref-small" }]
[llm.models.sturdy]
targets = [{ provider = "broken", model = "ref-small", weight = 100 }, { provider = "ref", model = "ref-small" }]
[llm.models.limited]
targets = [{ provider = "limited", model = "ref-small" }]
[llm.models.native-claude]
targets = [{ provider = "claude", model = "ref-large" }]
[llm.models.litellm-mock]
targets = [{ provider = "litellm", model = "mock-gpt" }]
TOML
"$toolgate" serve --config "$tmp/toolgate.toml" >"$tmp/toolgate.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$port/readyz" toolgate || { tail -n 30 "$tmp/toolgate.log" >&2; exit 1; }
admin="$(grep -o 'tgk_[0-9a-f]*_[0-9a-f]*' "$tmp/toolgate.log" | head -n1)"
key="$("$toolgate" --config "$tmp/toolgate.toml" keys create --name sdk --group eng | grep -o 'tgk_[0-9a-f]*_[0-9a-f]*' | head -n1)"
[[ -n "$admin" && -n "$key" ]] || { log "no API keys"; tail -n 30 "$tmp/toolgate.log" >&2; exit 1; }
wait_http "http://127.0.0.1:$lite/health/liveliness" "LiteLLM's proxy" || { tail -n 30 "$tmp/litellm.log" >&2; exit 1; }

TOOLGATE_BASE="http://127.0.0.1:$port" TOOLGATE_KEY="$key" TOOLGATE_ADMIN="$admin" \
  "$venv/bin/python" "$here/sdk_test.py" || { log "toolgate's log:"; tail -n 40 "$tmp/toolgate.log" >&2; exit 1; }
