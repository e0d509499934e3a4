#!/usr/bin/env bash
# Installs what the browser tests need, once:
# - Debian's chromium (apt-get, when /usr/bin/chromium is missing and this
#   runs as root; never a browser downloaded by Playwright);
# - the pinned playwright-core (package.json + package-lock.json here),
#   with npm ci into ${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/browser (never
#   into the repository).
# Prints that install's node_modules path as the last line on stdout:
#
#   NODE_PATH="$(bash tests/browser/install.sh | tail -n1)" node tests/browser/approve.cjs …
#
# Reinstalls (npm ci) only when the lock file, package.json or the Node
# version changed. npm's and apt's own output goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/browser"

export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

if ! command -v chromium >/dev/null; then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "chromium not found: install Debian's chromium (apt-get install chromium)" >&2
    exit 1
  fi
  echo "browser: apt-get install chromium" >&2
  {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium ||
      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
  } >&2
fi

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
if [[ "$have" != "$want" || ! -f "$dir/node_modules/playwright-core/package.json" ]]; then
  echo "browser: npm ci (playwright-core) into $dir" >&2
  rm -rf "$dir/node_modules" "$dir/.installed"
  cp "$here/package.json" "$here/package-lock.json" "$dir/"
  # No install scripts: playwright-core's would not download anything
  # anyway, and we use Debian's chromium.
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
  echo "$want" >"$dir/.installed"
fi

echo "$dir/node_modules"
