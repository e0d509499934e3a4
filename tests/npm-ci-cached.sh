#!/usr/bin/env bash
# Installs the pinned npm packages of a test helper directory (its
# package.json + package-lock.json) once, with `npm ci`, into
# ${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/NAME (never into the
# repository), and prints that install's node_modules path as the last line
# on stdout:
#
#   bash tests/npm-ci-cached.sh DIR NAME PACKAGE
#
# PACKAGE is one package the install must hold. Reinstalls only when the
# lock file, package.json or the Node version changed; one installer at a
# time per cache. npm's own output goes to stderr. Needs node/npm 20.19+.
set -euo pipefail

src="$(cd "$1" && pwd)"
name="$2"
package="$3"
dir="${TOOLGATE_CACHE:-$HOME/.cache/toolgate}/$name"

export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

sha() { cat "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$dir"
if command -v flock >/dev/null; then
  exec 9>"$dir/.lock"
  flock 9
fi

want="$(sha "$src/package.json" "$src/package-lock.json") $(node --version)"
have=""
[[ -f "$dir/.installed" ]] && have="$(cat "$dir/.installed")"
if [[ "$have" != "$want" || ! -f "$dir/node_modules/$package/package.json" ]]; then
  echo "$name: npm ci ($package) into $dir" >&2
  rm -rf "$dir/node_modules" "$dir/.installed"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  # No install scripts: nothing these tests use needs one (playwright-core's
  # would not download a browser anyway; Debian's chromium is used).
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
  echo "$want" >"$dir/.installed"
fi

echo "$dir/node_modules"
