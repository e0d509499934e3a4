#!/usr/bin/env bash
# Installs the pinned oauth2-mock-server (package.json + package-lock.json
# here) for tests/idp/idp.cjs, once, into
# ${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/idp (never into the repository),
# and prints that install's node_modules path as the last line on stdout:
#
#   NODE_PATH="$(bash tests/idp/install.sh | tail -n1)" node tests/idp/idp.cjs
#
# Reinstalls (npm ci) only when the lock file, package.json or the Node
# version changed; otherwise returns at once (tests/npm-ci-cached.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../npm-ci-cached.sh" "$here" idp oauth2-mock-server
