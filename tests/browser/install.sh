#!/usr/bin/env bash
# Installs what the browser tests need, once:
# - Debian's chromium (apt-get, when it is missing and this runs as root;
#   never a browser downloaded by Playwright);
# - the pinned playwright-core (package.json + package-lock.json here),
#   into ${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/browser (never into the
#   repository; tests/npm-ci-cached.sh).
# Prints that install's node_modules path as the last line on stdout:
#
#   NODE_PATH="$(bash tests/browser/install.sh | tail -n1)" node tests/browser/approvals.cjs '{…}'
#
# apt's and npm's own output goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

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

exec bash "$here/../npm-ci-cached.sh" "$here" browser playwright-core
