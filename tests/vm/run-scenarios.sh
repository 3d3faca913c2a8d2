#!/bin/bash
# run-scenarios.sh — run guest scenario scripts against real dm-thin pools in ONE qemu boot.
#
# Usage: tests/vm/run-scenarios.sh [--bin PATH]... [--out DIR] [--no-default-bin] SCENARIO_DIR_OR_FILE...
#
#   --bin PATH        copy PATH (with its shared libraries) into the guest's /usr/local/bin, which is
#                     first in PATH. Repeatable. Default: target/release/thinsend-native when it
#                     exists (a binary named thinsend-native also gets guest links thin_send/thin_recv).
#   --no-default-bin  do not add target/release/thinsend-native.
#   --file PATH       copy PATH into the guest as /files/BASENAME (e.g. a testdata image). Repeatable.
#   --out DIR         where results go (default ${TMPDIR:-/tmp}/thinsend-vm-results, emptied first):
#                     DIR/NAME/{log,rc,secs,dmesg,...} per scenario plus DIR/console.log.
#
# A directory argument means its *.sh files in name order. Each scenario is a plain sh script
# (busybox ash) run with OUT, SCENARIO, DISK1=/dev/vda, DISK2=/dev/vdb set and the helpers of
# tests/vm/guest/lib.sh already sourced; exit status 0 = PASS. Both pool disks are wiped after
# every scenario, so each one starts with two empty disks (create your own VGs on them).
# Host variables named VMT_* are exported to the scenarios.
# Prints "PASS name" / "FAIL name" per scenario, then "N passed, M failed"; exit 1 if any failed.
# See tests/vm/lib.sh for the environment knobs (cache dir, memory, timeouts).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"

BINS=()
VM_FILES=()
DEFAULT_BIN=1
RES=${TMPDIR:-/tmp}/thinsend-vm-results
SCEN=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin) [ $# -ge 2 ] || vm_die "--bin needs a path"; [ -x "$2" ] || vm_die "--bin $2: not an executable file"
           BINS+=("$(readlink -f "$2")"); shift 2 ;;
    --bin=*) b=${1#--bin=}; [ -x "$b" ] || vm_die "--bin $b: not an executable file"; BINS+=("$(readlink -f "$b")"); shift ;;
    --file) [ $# -ge 2 ] && [ -f "$2" ] || vm_die "--file needs an existing file"; VM_FILES+=("$(readlink -f "$2")"); shift 2 ;;
    --out) RES=$2; shift 2 ;;
    --out=*) RES=${1#--out=}; shift ;;
    --no-default-bin) DEFAULT_BIN=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) vm_die "unknown option $1" ;;
    *) if [ -d "$1" ]; then
         for f in "$1"/*.sh; do [ -e "$f" ] && SCEN+=("$(readlink -f "$f")"); done
       elif [ -f "$1" ]; then SCEN+=("$(readlink -f "$1")")
       else vm_die "no such scenario file or directory: $1"; fi
       shift ;;
  esac
done
[ ${#SCEN[@]} -gt 0 ] || vm_die "no scenarios given (usage: $0 [--bin PATH]... SCENARIO_DIR_OR_FILE...)"
if [ "$DEFAULT_BIN" = 1 ] && [ ${#BINS[@]} = 0 ]; then
  if [ -x "$REPO/target/release/thinsend-native" ]; then BINS+=("$REPO/target/release/thinsend-native")
  else vm_log "note: $REPO/target/release/thinsend-native not built; running without it"; fi
fi
names=()
for s in "${SCEN[@]}"; do n=$(basename "$s"); n=${n%.sh}
  for m in "${names[@]}"; do [ "$m" = "$n" ] && vm_die "two scenarios named $n"; done
  names+=("$n")
done

rm -rf "$RES"; mkdir -p "$RES"
vm_run "$RES" BINS "${SCEN[@]}"

pass=0; fail=0
for n in "${names[@]}"; do
  if [ -f "$RES/$n/rc" ] && [ "$(cat "$RES/$n/rc")" = 0 ]; then
    echo "PASS $n"; pass=$((pass + 1))
  else
    if [ -f "$RES/$n/rc" ]; then why="rc=$(cat "$RES/$n/rc")"; else why="no result (guest died or timed out?)"; fi
    echo "FAIL $n"
    echo "    $why; last lines of $RES/$n/log:"
    tail -n 25 "$RES/$n/log" 2>/dev/null | sed 's/^/    | /' || true
    fail=$((fail + 1))
  fi
done
if [ ! -f "$RES/end_uptime" ]; then
  echo "guest did not finish (qemu rc=$VM_QRC); last console lines ($RES/console.log):"
  tail -n 30 "$RES/console.log" | sed 's/^/    /'
fi
times=""
for n in "${names[@]}"; do times="$times $n=$(cat "$RES/$n/secs" 2>/dev/null || echo '?')s"; done
vm_log "scenario times:$times"
vm_log "VM wall ${VM_WALL}s; guest uptime at first scenario $(cat "$RES/boot_uptime" 2>/dev/null || echo '?')s, at end $(cat "$RES/end_uptime" 2>/dev/null || echo '?')s; results in $RES"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
