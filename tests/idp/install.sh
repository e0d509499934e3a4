#!/usr/bin/env bash
# Installs the pinned oauth2-mock-server (package.json + package-lock.json
# here) for tests/idp/idp.cjs, once, into
# ${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/idp (never into the repository),
# and prints that install's node_modules path as the last line on stdout:
#
#   NODE_PATH="$(bash tests/idp/install.sh | tail -n1)" node tests/idp/idp.cjs
#
# Reinstalls (npm ci) only when the lock file, package.json or the Node
# version changed; otherwise returns at once. npm's own output goes to stderr.
# Needs node/npm 20.19+.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/idp"

export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

sha() { cat "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$dir"
# One installer at a time per cache (parallel runs share it).
if command -v flock >/dev/null; then
  exec 9>"$dir/.lock"
  flock 9
fi

want="$(sha "$here/package.json" "$here/package-lock.json") $(node --version)"
have=""
[[ -f "$dir/.installed" ]] && have="$(cat "$dir/.installed")"
if [[ "$have" != "$want" || ! -f "$dir/node_modules/oauth2-mock-server/package.json" ]]; then
  echo "idp: npm ci (oauth2-mock-server) into $dir" >&2
  rm -rf "$dir/node_modules" "$dir/.installed"
  cp "$here/package.json" "$here/package-lock.json" "$dir/"
  # No install scripts: nothing in this tree needs one.
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
  echo "$want" >"$dir/.installed"
fi

echo "$dir/node_modules"
