#!/usr/bin/env bash
# Writes what `podwire replay FILE --json` gives for every recorded fixture into test/fixtures/recordings/expected/,
# which test/recording/fixtures.test.ts compares against. Run it (after npm run build) only when a change of the
# records is meant, and read the diff it leaves before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
for recording in test/fixtures/recordings/*.ndjson; do
  name=$(basename "$recording" .ndjson)
  node dist/src/cli.js replay "$recording" --json >"test/fixtures/recordings/expected/$name.records.ndjson"
done
git status --short test/fixtures/recordings/expected
