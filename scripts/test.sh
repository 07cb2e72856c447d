#!/usr/bin/env bash
# Every test, ending with one plain line: N passed, N failed, N skipped.
# Lint and types; the whole suite (unit and, as root, the real lab) on this Node.js; the unit suite again on Node.js 22.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
rm -f .cache/vitest-*.json
status=0

echo "== lint"
npm run --silent lint || status=1

bash scripts/fetch-containerd-sid.sh

echo "== tests on Node.js $(node --version)"
npx vitest run --reporter=default --reporter=json --outputFile.json=.cache/vitest-node20.json || status=1

node22=$(bash scripts/node22.sh) || { echo "could not install Node.js 22"; status=1; }
if [ -n "${node22:-}" ]; then
  echo "== unit tests on Node.js $("$node22" --version)"
  "$node22" node_modules/vitest/vitest.mjs run --project unit \
    --reporter=default --reporter=json --outputFile.json=.cache/vitest-node22.json || status=1
fi

node scripts/test-summary.mjs .cache/vitest-*.json || status=1
exit "$status"
