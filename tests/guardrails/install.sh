#!/usr/bin/env bash
# Install the guardrails' evaluation packages (requirements.txt, pinned,
# --no-deps) into a venv in the toolgate cache, and build the data sets
# from them (data.py). Prints two lines last: the venv's python and the
# data directory.
#
#   bash tests/guardrails/install.sh
#
# Re-installs only when requirements.txt or data.py changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/guardrails"
python="${PYTHON:-python3}"
venv="$cache/venv"
data="$cache/data"
want="$(cat "$here/requirements.txt" "$here/data.py" | sha256sum | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
have=""
[[ -f "$cache/.installed" ]] && have="$(cat "$cache/.installed")"
if [[ "$have" != "$want" || ! -x "$venv/bin/python" || ! -f "$data/agentdojo-test.jsonl" ]]; then
  echo "guardrails: installing evaluation packages into $venv" >&2
  rm -rf "$venv" "$data" "$cache/.installed"
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q --no-deps \
    -r "$here/requirements.txt" >&2
  "$venv/bin/python" "$here/data.py" "$data" >&2
  echo "$want" >"$cache/.installed"
fi
echo "$venv/bin/python"
echo "$data"
