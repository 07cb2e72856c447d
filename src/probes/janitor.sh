#!/bin/sh
# podwire's janitor (janitor.ts): removes what one podwire daemon placed in tracefs, off the daemon's clock.
# Usage: janitor.sh DAEMON_PID TRACEFS TMPDIR ATTACH_DIR. The daemon holds this script's stdin open. Each line it writes names
# one of its uprobe event groups to remove now; when stdin ends (the daemon stopped, or was killed with -9), every
# group and trace instance of that daemon still there is removed, then its probe program directories.
# Disabling costs the kernel about 25 ms an event (a uprobe unregister waits for a grace period) and removing an
# enabled event is refused: this is the slow part of a stop, done here so that the daemon exits at once.
set -u
daemon=$1
tracefs=$2
tmp=$3
attach_dir=$4

remove() {
  group=$1
  instance=$tracefs/instances/$group
  if [ -d "$instance" ]; then
    echo 0 >"$instance/events/$group/enable" 2>/dev/null
    # The daemon's trace_pipe reader ends with it (it is tied to it); until then the instance is busy.
    tries=0
    until rmdir "$instance" 2>/dev/null || [ ! -d "$instance" ] || [ "$tries" -ge 200 ]; do
      tries=$((tries + 1))
      sleep 0.05
    done
  fi
  # The whole group in one write; a kernel that wants each event named gets each.
  if ! echo "-:$group/" >>"$tracefs/uprobe_events" 2>/dev/null; then
    for event in $(sed -n "s|^p:$group/\([^ ]*\) .*|\1|p" "$tracefs/uprobe_events"); do
      echo "-:$group/$event" >>"$tracefs/uprobe_events" 2>/dev/null
    done
  fi
}

while IFS= read -r group; do
  case $group in podwire_"$daemon"_*) remove "$group" ;; esac
done

for group in $(sed -n "s|^p:\(podwire_${daemon}_[0-9]*\)/.*|\1|p" "$tracefs/uprobe_events" | sort -u); do
  remove "$group"
done
for instance in "$tracefs"/instances/podwire_"$daemon"_*; do
  [ -d "$instance" ] && rmdir "$instance" 2>/dev/null
done
rm -rf "$tmp"/podwire-probe-"$daemon"-*
# The live view's socket (src/attach): a daemon killed with -9 leaves it, and its directory when no other daemon's
# socket is in it.
rm -f "$attach_dir/attach-$daemon.sock"
rmdir "$attach_dir" 2>/dev/null
exit 0
