#!/usr/bin/env bash
# Records real handshakes on the lab for tests and benchmarks, as root:
#   bash scripts/record-fixture.sh OUT.ndjson COUNT PARALLEL [CNI_CONFIG]
# writes OUT.ndjson (the raw recording, for podwire replay) and OUT.records.ndjson (what the live tracer emitted).
# PREFIX and NAMESPACE, when set, name the pods (lab pods create --prefix, --namespace); CONTAINERD runs the lab on
# that containerd binary (lab up --containerd).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1 count=$2 parallel=$3 cni=${4:-}
podwire=(node dist/src/cli.js)
records="${out%.ndjson}.records.ndjson"

"${podwire[@]}" lab up ${cni:+--cni-config "$cni"} ${CONTAINERD:+--containerd "$CONTAINERD"}
trap '"${podwire[@]}" lab down' EXIT
"${podwire[@]}" trace --record "$out" >"$records" &
tracer=$!
for _ in $(seq 100); do grep -q '"state":"ready"' "$records" 2>/dev/null && break; sleep 0.1; done
"${podwire[@]}" lab pods create --count "$count" --parallel "$parallel" \
  ${PREFIX:+--prefix "$PREFIX"} ${NAMESPACE:+--namespace "$NAMESPACE"} || true
"${podwire[@]}" lab pods delete --all
sleep 1
kill -INT "$tracer"
wait "$tracer"
echo "recorded $(wc -l <"$out") lines into $out; the live records are in $records"
