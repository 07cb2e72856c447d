#!/usr/bin/env bash
# Records the fixtures of test/decode/rtnetlink.test.ts: the rtnetlink bytes real CNI plugins send and receive.
# They are the bridge and loopback plugins' bytes, as bpftrace JSON lines.
#
#   sudo bash scripts/record-rtnetlink.sh [OUTDIR]     (default test/fixtures/rtnetlink)
#
# Runs /usr/lib/cni/bridge by hand in a namespace of its own (netns pwdec-1, bridge pwdec0,
# 10.244.90.0/24, IPAM leases in /tmp/pwdec-ipam): ADD, the same ADD again (the kernel answers
# EEXIST), DEL; then /usr/lib/cni/loopback ADD in that namespace. Then, for what the plugins never
# show, a kernel extended ack (Python, in that namespace) and every byte value through buf() (gcc).
# Everything it makes is removed on exit, also on failure. Needs root, bpftrace (written for 0.17)
# and the CNI reference plugins.
#
# Each fixture line is bpftrace's own JSON output ({"type": "printf", "data": "..."}); its data is
#   rtnetlink syscall=sendto|recvfrom ns=N comm=C pid=P tid=T fd=F len=L off=O bytes=\xNN...
# len is what the syscall said (sendto's len, recvfrom's return value), off where in the buffer the
# chunk starts, bytes buf() printed with %rx (every byte as \xNN: %r leaves printable bytes, the
# backslash too, as they are, which is ambiguous). A buffer longer than 192 bytes comes as a second
# line with off=192; bytes past 384 are not recorded. sendmsg/recvmsg are probed only to show
# whether the plugins use them (a line without bytes); recvfrom <= 0 gives a line without bytes.
set -euo pipefail

OUT=${1:-test/fixtures/rtnetlink}
NETNS=pwdec-1
BRIDGE=pwdec0
IPAM_DIR=/tmp/pwdec-ipam
CONTAINER_ID=pwdec-test
BRIDGE_CONF='{"cniVersion":"1.0.0","name":"pwdec","type":"bridge","bridge":"pwdec0","isGateway":true,"ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.90.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"/tmp/pwdec-ipam"}}'
LOOPBACK_CONF='{"cniVersion":"1.0.0","name":"pwdec-lo","type":"loopback"}'

fail() {
  echo "record-rtnetlink: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root (bpftrace, network namespaces)"
command -v bpftrace >/dev/null || fail "bpftrace is missing: apt-get install bpftrace"
[ -x /usr/lib/cni/bridge ] || fail "/usr/lib/cni/bridge is missing: apt-get install containernetworking-plugins"
[ -e "/var/run/netns/$NETNS" ] && fail "netns $NETNS already exists: remove it (ip netns del $NETNS) and run again"
ip link show "$BRIDGE" >/dev/null 2>&1 && fail "link $BRIDGE already exists: remove it (ip link del $BRIDGE) and run again"
[ -e "$IPAM_DIR" ] && fail "$IPAM_DIR already exists: remove it and run again"
[ -e /sys/kernel/tracing/events ] || mount -t tracefs tracefs /sys/kernel/tracing

WORK=$(mktemp -d /tmp/pwdec-record.XXXXXX)
BPFTRACE_PID=
cleanup() {
  set +e
  if [ -n "$BPFTRACE_PID" ] && kill -0 "$BPFTRACE_PID" 2>/dev/null; then
    kill -INT "$BPFTRACE_PID"
    wait "$BPFTRACE_PID"
  fi
  if [ -e "/var/run/netns/$NETNS" ]; then
    echo "$BRIDGE_CONF" | CNI_COMMAND=DEL CNI_CONTAINERID=$CONTAINER_ID \
      CNI_NETNS=/var/run/netns/$NETNS CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
      /usr/lib/cni/bridge >/dev/null 2>&1
    ip netns del "$NETNS"
  fi
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  rm -rf "$IPAM_DIR" "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$WORK/rtnetlink.bt" <<'EOF'
tracepoint:syscalls:sys_enter_sendto /comm == "bridge" || comm == "loopback" || comm == "pwdecextack"/ {
  $n = args->len > 192 ? 192 : args->len;
  printf("rtnetlink syscall=sendto ns=%llu comm=%s pid=%d tid=%d fd=%d len=%d off=0 bytes=%rx\n",
    nsecs, comm, pid, tid, args->fd, args->len, buf(uptr(args->buff), $n));
  if (args->len > 192) {
    $m = args->len > 384 ? 192 : args->len - 192;
    printf("rtnetlink syscall=sendto ns=%llu comm=%s pid=%d tid=%d fd=%d len=%d off=192 bytes=%rx\n",
      nsecs, comm, pid, tid, args->fd, args->len, buf(uptr(args->buff + 192), $m));
  }
}

tracepoint:syscalls:sys_enter_recvfrom /comm == "bridge" || comm == "loopback" || comm == "pwdecextack"/ {
  @recvfrom_buf[tid] = (uint64)args->ubuf;
  @recvfrom_fd[tid] = args->fd;
}

tracepoint:syscalls:sys_exit_recvfrom /@recvfrom_buf[tid]/ {
  $p = @recvfrom_buf[tid];
  $fd = @recvfrom_fd[tid];
  if (args->ret > 0) {
    $n = args->ret > 192 ? 192 : args->ret;
    printf("rtnetlink syscall=recvfrom ns=%llu comm=%s pid=%d tid=%d fd=%d len=%d off=0 bytes=%rx\n",
      nsecs, comm, pid, tid, $fd, args->ret, buf(uptr($p), $n));
    if (args->ret > 192) {
      $m = args->ret > 384 ? 192 : args->ret - 192;
      printf("rtnetlink syscall=recvfrom ns=%llu comm=%s pid=%d tid=%d fd=%d len=%d off=192 bytes=%rx\n",
        nsecs, comm, pid, tid, $fd, args->ret, buf(uptr($p + 192), $m));
    }
  } else {
    printf("rtnetlink syscall=recvfrom ns=%llu comm=%s pid=%d tid=%d fd=%d len=%d\n",
      nsecs, comm, pid, tid, $fd, args->ret);
  }
  delete(@recvfrom_buf[tid]);
  delete(@recvfrom_fd[tid]);
}

tracepoint:syscalls:sys_enter_sendmsg,
tracepoint:syscalls:sys_enter_recvmsg
/comm == "bridge" || comm == "loopback" || comm == "pwdecextack"/ {
  printf("rtnetlink syscall=%s ns=%llu comm=%s pid=%d tid=%d fd=%d\n",
    probe, nsecs, comm, pid, tid, args->fd);
}

// How printf prints buf() with %r and %rx: the bytes 0-255, written by the pwdecbytes program below.
tracepoint:syscalls:sys_enter_write /comm == "pwdecbytes"/ {
  printf("bufformat format=r len=%d bytes=%r\n", args->count, buf(uptr(args->buf), 128));
  printf("bufformat format=rx len=%d bytes=%rx\n", args->count, buf(uptr(args->buf), 128));
}

END {
  clear(@recvfrom_buf);
  clear(@recvfrom_fd);
}
EOF

BPFTRACE_STRLEN=200 bpftrace -f json "$WORK/rtnetlink.bt" >"$WORK/trace.ndjson" 2>"$WORK/bpftrace.err" &
BPFTRACE_PID=$!
for _ in $(seq 1 60); do
  grep -q '"attached_probes"' "$WORK/trace.ndjson" 2>/dev/null && break
  kill -0 "$BPFTRACE_PID" 2>/dev/null || fail "bpftrace did not start: $(cat "$WORK/bpftrace.err")"
  sleep 0.5
done
grep -q '"attached_probes"' "$WORK/trace.ndjson" || fail "bpftrace did not attach in 30 s"

ip netns add "$NETNS"

# One plugin run; its pid (the exec'd plugin keeps the shell's pid) picks its lines out of the trace.
run_plugin() {
  local label=$1 plugin=$2 command=$3 ifname=$4 conf=$5
  set +e
  echo "$conf" | CNI_COMMAND=$command CNI_CONTAINERID=$CONTAINER_ID \
    CNI_NETNS=/var/run/netns/$NETNS CNI_IFNAME=$ifname CNI_PATH=/usr/lib/cni \
    bash -c 'echo $$ >"$0"; exec "$1"' "$WORK/$label.pid" "/usr/lib/cni/$plugin" >"$WORK/$label.result.json"
  echo "$label: /usr/lib/cni/$plugin $command exited $?"
  set -e
}

run_plugin bridge-add bridge ADD eth0 "$BRIDGE_CONF"
run_plugin bridge-add-again bridge ADD eth0 "$BRIDGE_CONF"
run_plugin bridge-del bridge DEL eth0 "$BRIDGE_CONF"
run_plugin loopback-add loopback ADD lo "$LOOPBACK_CONF"

# A real extended ack (the Go plugins do not ask for them): rename lo in the netns to a name longer
# than IFNAMSIZ with NETLINK_EXT_ACK on; once with the whole request echoed, once with
# NETLINK_CAP_ACK (only its header). Python's socket calls are sendto/recvfrom too.
if [ -x /usr/bin/python3 ]; then
  cat >"$WORK/extack.py" <<'PY'
import ctypes, socket, struct
ctypes.CDLL(None).prctl(15, b"pwdecextack", 0, 0, 0)  # PR_SET_NAME: the comm bpftrace filters on
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
RTM_NEWLINK, NLM_F_REQUEST, NLM_F_ACK, IFLA_IFNAME = 16, 1, 4, 3
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
s.bind((0, 0))
def request(seq):
    name = b"pwdec-name-too-long\0"
    attr = struct.pack("=HH", 4 + len(name), IFLA_IFNAME) + name
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BxHiII", 0, 0, 1, 0, 0) + attr
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
s.sendto(request(1), (0, 0))
s.recvfrom(65536)
s.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
s.sendto(request(2), (0, 0))
s.recvfrom(65536)
PY
  ip netns exec "$NETNS" /usr/bin/python3 "$WORK/extack.py" && echo "extack: requests sent"
else
  echo "/usr/bin/python3 is missing: extack.ndjson is not recorded"
fi

# Every byte value once, in two 128-byte writes, to see how bpftrace prints them.
if command -v gcc >/dev/null; then
  cat >"$WORK/pwdecbytes.c" <<'C'
#include <fcntl.h>
#include <unistd.h>
int main(void) {
  unsigned char b[256];
  for (int i = 0; i < 256; i++) b[i] = (unsigned char)i;
  int fd = open("/dev/null", O_WRONLY);
  return write(fd, b, 128) != 128 || write(fd, b + 128, 128) != 128;
}
C
  gcc -o "$WORK/pwdecbytes" "$WORK/pwdecbytes.c" && "$WORK/pwdecbytes"
else
  echo "gcc is missing: buf-formats.ndjson is not recorded"
fi

sleep 1
kill -INT "$BPFTRACE_PID"
wait "$BPFTRACE_PID" || true
BPFTRACE_PID=

mkdir -p "$OUT"
for label in bridge-add bridge-add-again bridge-del loopback-add; do
  pid=$(cat "$WORK/$label.pid")
  grep -F " pid=$pid " "$WORK/trace.ndjson" >"$OUT/$label.ndjson" || true
  cp "$WORK/$label.result.json" "$OUT/$label.result.json"
  echo "$OUT/$label.ndjson: $(wc -l <"$OUT/$label.ndjson") lines, $(wc -c <"$OUT/$label.ndjson") bytes"
done
grep -F ' comm=pwdecextack ' "$WORK/trace.ndjson" >"$OUT/extack.ndjson" || true
grep -F '"bufformat ' "$WORK/trace.ndjson" >"$OUT/buf-formats.ndjson" || true

plugins_version=$(dpkg-query -W -f='${Version}' containernetworking-plugins 2>/dev/null || echo unknown)
cat >"$OUT/README.md" <<README
# rtnetlink recordings

What the CNI reference plugins really sent and received over rtnetlink, recorded as root with

    bash scripts/record-rtnetlink.sh $OUT

on $(date -u +%Y-%m-%d): kernel $(uname -r), $(bpftrace --version), containernetworking-plugins
$plugins_version. The bpftrace program and the line format are in that script.

- \`bridge-add.ndjson\`: \`/usr/lib/cni/bridge\` ADD (netns pwdec-1, bridge pwdec0, 10.244.90.0/24, isGateway)
- \`bridge-add-again.ndjson\`: the same ADD again, same container id and interface (the kernel says EEXIST)
- \`bridge-del.ndjson\`: DEL
- \`loopback-add.ndjson\`: \`/usr/lib/cni/loopback\` ADD in the same netns
- \`*.result.json\`: what each plugin printed on stdout
- \`extack.ndjson\`: a small Python program (in the script) asking, in netns pwdec-1, to rename \`lo\`
  to a name longer than IFNAMSIZ with NETLINK_EXT_ACK on: the kernel's extended-ack errors, once
  with the request echoed, once with NETLINK_CAP_ACK
- \`buf-formats.ndjson\`: how bpftrace's printf prints \`buf()\` with \`%r\` and \`%rx\`: the bytes 0-255,
  written by a small C program in two 128-byte writes
README
echo "$OUT/README.md written"
