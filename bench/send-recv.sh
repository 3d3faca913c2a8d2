#!/usr/bin/env bash
# Send/receive throughput against cat and dd (and the binary before this change, OLD=), CPU seconds
# per GB, and bytes read by an incremental send.
#
# Builds the release binary, makes a pool with thin_restore: thin 1 maps a whole volume of
# BENCH_GIB GiB (default 4) on 64 KiB blocks, thin 2 is a snapshot of it with 1% of the blocks
# rewritten (every 100th block, so the change is scattered). The pool data file is filled with
# random bytes and read once so it is in the page cache (warm), then prints:
#   1. full send of thin 1 through a pipe to `cat >/dev/null`, from the pool data file (--data) and
#      from a loop device over the volume (--source, direct-io, what reading an LV looks like), warm
#      and cold (the file dropped with POSIX_FADV_DONTNEED, the loop device with BLKFLSBUF), against
#      `cat` (warm) / `dd bs=1M iflag=direct` (cold), for the loop device also four such dd at once
#      (one per quarter: what the device gives four direct readers, the sender's ceiling), the OLD
#      binary, ours writing the LINBIT format (what thin_send writes: "new linbit") and, where
#      THIN_SEND_BIN is given,
#      thin-send-recv's thin_send (run with `-s` against the fake lvs/dmsetup/thin_dump/thin_delta of
#      bench/fake-lvm/, whose LV reports the same loop device or pool data file as its lv_dm_path; its
#      stream is first received with `recv --to` and compared with the volume; it always reads with
#      O_DIRECT, so its warm and cold differ only by the load): MB/s and CPU s/GB each (thin_send's CPU
#      includes its lvs/dmsetup/thin_dump children), and the ratios new/thin_send;
#   2. recv of that stream (read by `cat` from a cached file) into a new file and into a loop device,
#      against `dd bs=1M conv=fdatasync` writing the same bytes from the same kind of pipe to the
#      same kind of target: throughput ratio (target >= 0.95);
#   3. an incremental send thin 1 -> thin 2 with the pool data file dropped from the page cache first
#      (POSIX_FADV_DONTNEED on that file only) and the metadata cached: the storage bytes the sender
#      read (read_bytes of /proc/PID/io, which includes readahead) against the changed bytes.
# Each timing is the best of BENCH_RUNS (default 3); in 1. the commands of a row take turns in each
# run. Needs thin_restore (thin-provisioning-tools), python3, about 3 x BENCH_GIB GiB free in
# BENCH_DIR (default /var/tmp).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
GIB=${BENCH_GIB:-4}
RUNS=${BENCH_RUNS:-3}
BS=65536
NB=$((GIB * 16384))  # 64 KiB blocks in the volume
NC=$((NB / 100))      # changed blocks

command -v thin_restore >/dev/null || { echo "bench: thin_restore not found (install thin-provisioning-tools)" >&2; exit 2; }
cargo build --release --quiet
BIN=$PWD/target/release/thinsend-native

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/thinsend-bench.XXXXXX")
TSR_LOCK=""
trap 'rm -rf "$W"; [ -z "$TSR_LOCK" ] || rm -f "$TSR_LOCK"' EXIT

# --- the pool -------------------------------------------------------------------------------
bench_pool "$W" "$NB" "$NC"
bench_random_data "$W/data" $((NB + NC))   # exactly the pool's data area, as a data device is
DATA_BYTES=$(stat -c %s "$W/data")
VOL=$((NB * BS))

now() { date +%s.%N; }
# best_of CMD...: the best wall time of RUNS runs, in seconds (stdout); CMD runs under bash -c.
best_of() {
  local best="" t0 t1 t
  for _ in $(seq "$RUNS"); do
    [ -n "${BEFORE:-}" ] && eval "$BEFORE"
    t0=$(now); bash -c "$1"; t1=$(now)
    t=$(echo "$t1 - $t0" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  echo "$best"
}
rate() { echo "scale=1; $1 / $2 / 1000000" | bc -l; }  # bytes secs -> MB/s
ratio() { echo "scale=3; ($1 / $2) / ($3 / $4)" | bc -l; }

cat "$W/data" >/dev/null  # warm the page cache
echo "thinsend-native send/recv benchmark: volume $VOL bytes ($GIB GiB, 64 KiB blocks), pool data file $DATA_BYTES bytes (cached), best of $RUNS"

# --- 1. full send vs cat / dd iflag=direct, old binary vs new, from a file and a loop device ------
# OLD=path (default /work/ref/thinsend-before when present) is the binary before this change.
OLD=${OLD:-/work/ref/thinsend-before}
[ -x "$OLD" ] || OLD=""
head -c "$VOL" "$W/data" >"$W/vol"   # the volume itself, for --source and the loop device
LOOP=$(losetup -f --show --direct-io=on "$W/vol" 2>/dev/null || true)
[ -n "$LOOP" ] && trap 'losetup -d "$LOOP"; rm -rf "$W"; [ -z "$TSR_LOCK" ] || rm -f "$TSR_LOCK"' EXIT
drop_cache() { python3 -c "import os,sys
for p in sys.argv[1:]:
    fd=os.open(p,os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)" "$@"; }
# one CMD: wall seconds of `CMD | cat >/dev/null`, CMD's own CPU seconds (user+sys, its children's
# too) and its exit status
one() {
  local t0 t1
  t0=$(now)
  /usr/bin/time -o "$W/cpu" -f '%x %U %S' $1 | cat >/dev/null || true
  t1=$(now)
  echo "$(echo "$t1 - $t0" | bc -l) $(tail -n 1 "$W/cpu" | awk '{print $2 + $3, $1}')"
}
# thin-send-recv's thin_send (THIN_SEND_BIN) against the fake LVM of bench/fake-lvm/: the LV bench/vol
# reports the loop device as its lv_dm_path (what thin_send opens, O_DIRECT, and reads), bench/file the
# pool data file (thin 1 maps data block N at block N, so both hold the volume's bytes at its offsets).
TSR=${THIN_SEND_BIN:-}
if [ -n "$TSR" ]; then
  [ -x "$TSR" ] || { echo "bench: THIN_SEND_BIN=$TSR is not executable" >&2; exit 2; }
  mkdir "$W/fake-lvm"
  { echo "vg bench"; echo "pool pool $W/meta"; echo "lv file 1 $W/data"
    [ -n "$LOOP" ] && echo "lv vol 1 $LOOP"; echo "state $W/fake-lvm"; } >"$W/fake-lvm/conf"
  TSR_CMD="env PATH=$PWD/bench/fake-lvm:$PATH FAKE_LVM_CONF=$W/fake-lvm/conf $TSR -s"
  # thin_send takes /var/run/thin-send-recv.lock (flock); remove it afterwards if it is ours
  [ -e /var/run/thin-send-recv.lock ] || TSR_LOCK=/var/run/thin-send-recv.lock
  # its stream must carry the volume's bytes (its LINBIT stream has no size: recv takes --size)
  for lv in file ${LOOP:+vol}; do
    $TSR_CMD "bench/$lv" | "$BIN" recv --to "$W/tsr.img" --size "$VOL" --quiet
    cmp -s "$W/tsr.img" "$W/vol" || { echo "bench: thin_send's stream of bench/$lv differs from the volume" >&2; exit 1; }
    rm -f "$W/tsr.img"
  done
  [ -e "$W/fake-lvm/metadata_snap" ] && { echo "bench: thin_send left the metadata snapshot reserved" >&2; exit 1; }
  echo "   thin_send ($TSR, $($TSR -v)): its streams of the volume from the loop device and from the pool data file received and equal to the volume"
fi
# mbs SECS -> MB/s of the volume; cpugb CPU_SECS -> CPU s/GB of the volume
mbs() { rate "$VOL" "$1"; }
cpugb() { echo "scale=2; $1 / ($VOL / 1000000000)" | bc -l; }
# src_row NAME SRC_ARGS REF_WARM REF_COLD COLD_CMD [TSR_LV]: warm and cold rows for one source, each
# command (ref, thin_send bench/TSR_LV when given, old, new) run RUNS times in turn, the best wall
# time and the least CPU of each kept
src_row() {
  local name=$1 args=$2 refw=$3 refc=$4 cold=$5 tlv=${6:-} refp=${7:-} temp what cmd t c rc
  for temp in warm cold; do
    local -A bt=() bcpu=()
    local whats="ref"
    [ -n "$refp" ] && whats="$whats par"
    [ -n "$TSR" ] && [ -n "$tlv" ] && whats="$whats tsr"
    [ -n "$OLD" ] && whats="$whats old"
    whats="$whats new lin"
    for _ in $(seq "$RUNS"); do
      for what in $whats; do
        case $what in
          ref) cmd=$refw; [ $temp = cold ] && cmd=$refc;;
          par) cmd=$refp;;
          tsr) cmd="$TSR_CMD bench/$tlv";;
          old) cmd="$OLD send --metadata $W/meta $args --thin-id 1 --size $VOL --quiet";;
          new) cmd="$BIN send --metadata $W/meta $args --thin-id 1 --size $VOL --quiet";;
          lin) cmd="$BIN send --metadata $W/meta $args --thin-id 1 --size $VOL --quiet --stream-format linbit";;
        esac
        if [ $temp = cold ]; then eval "$cold"; else $cmd >/dev/null 2>&1 || true; fi
        read -r t c rc < <(one "$cmd")
        [ "$rc" = 0 ] || { echo "bench: \`$cmd\` failed (exit status $rc)" >&2; exit 1; }
        if [ -z "${bt[$what]:-}" ] || [ "$(echo "$t < ${bt[$what]}" | bc -l)" = 1 ]; then bt[$what]=$t; fi
        if [ -z "${bcpu[$what]:-}" ] || [ "$(echo "$c < ${bcpu[$what]}" | bc -l)" = 1 ]; then bcpu[$what]=$c; fi
      done
    done
    local line="   $name $temp:"
    for what in $whats; do
      local label=${what/tsr/thin_send}
      label=${label/lin/new linbit}
      line="$line ${label/par/4x dd} $(mbs "${bt[$what]}") MB/s $(cpugb "${bcpu[$what]}") CPU s/GB;"
    done
    if [ -n "${bt[tsr]:-}" ]; then
      line="$line new/thin_send: MB/s $(echo "scale=2; ${bt[tsr]} / ${bt[new]}" | bc -l)x, CPU $(echo "scale=2; ${bcpu[new]} / ${bcpu[tsr]}" | bc -l)x"
      line="$line; new linbit/thin_send: MB/s $(echo "scale=2; ${bt[tsr]} / ${bt[lin]}" | bc -l)x"
    fi
    if [ -n "${bt[par]:-}" ]; then
      line="$line new/4x dd: MB/s $(echo "scale=2; ${bt[par]} / ${bt[new]}" | bc -l)x"
    fi
    echo "$line"
  done
}
echo "1. full send of $VOL bytes through a pipe into cat >/dev/null (load: $(cut -d' ' -f1-3 /proc/loadavg)); CPU is the sender's (or cat's/dd's)"
src_row "from the pool data file (--data)" "--data $W/data" "cat $W/data" "dd if=$W/data bs=1M iflag=direct status=none" "drop_cache $W/data" file
if [ -n "$LOOP" ]; then
  # what the device gives to four direct readers at once, one per quarter (the sender keeps four
  # reads in flight): the ceiling of a send from it
  Q=$((VOL / 4 / 1048576))
  printf 'for i in 0 1 2 3; do dd if=%s of=/dev/null bs=1M iflag=direct skip=$((i * %d)) count=%d status=none & done; wait\n' \
    "$LOOP" "$Q" "$Q" >"$W/par-dd.sh"
  PAR_DD="bash $W/par-dd.sh"
  src_row "from a loop device (--source $LOOP, direct-io)" "--source $LOOP" "cat $LOOP" "dd if=$LOOP bs=1M iflag=direct status=none" "blockdev --flushbufs $LOOP; drop_cache $W/vol" vol "$PAR_DD"
else
  echo "   loop device: cannot attach one (needs root): skipped"
fi
echo "   (load after: $(cut -d' ' -f1-3 /proc/loadavg))"
SEND="$BIN send --metadata $W/meta --data $W/data --thin-id 1 --size $VOL --quiet"
STREAM_BYTES=$($SEND | wc -c)

# --- 2. recv into a file vs dd ----------------------------------------------------------------
$SEND >"$W/stream"
cat "$W/stream" >/dev/null
head -c "$VOL" "$W/data" >"$W/raw"   # exactly the volume's bytes, for dd
cat "$W/raw" >/dev/null
BEFORE="rm -f $W/out $W/out.dd; sync"
t_dd=$(best_of "cat $W/raw | dd of=$W/out.dd bs=1M iflag=fullblock conv=fdatasync status=none")
t_recv=$(best_of "cat $W/stream | $BIN recv --to $W/out --quiet")
unset BEFORE
cmp -s "$W/out" "$W/raw" || { echo "bench: received image differs from the source" >&2; exit 1; }
r_recv=$(ratio "$VOL" "$t_recv" "$VOL" "$t_dd")
printf '2. recv into a file (fdatasync): dd %s MB/s (%.3fs); recv %s MB/s (%.3fs) of %s data bytes\n' \
  "$(rate "$VOL" "$t_dd")" "$t_dd" "$(rate "$VOL" "$t_recv")" "$t_recv" "$VOL"
printf '   ratio recv/dd = %s (target >= 0.95)\n' "$r_recv"
rm -f "$W/out" "$W/out.dd"
if [ -n "$LOOP" ]; then
  truncate -s "$VOL" "$W/tgt"
  TLOOP=$(losetup -f --show --direct-io=on "$W/tgt")
  trap 'losetup -d "$LOOP"; losetup -d "$TLOOP"; rm -rf "$W"; [ -z "$TSR_LOCK" ] || rm -f "$TSR_LOCK"' EXIT
  t_dd=$(best_of "cat $W/raw | dd of=$TLOOP bs=1M iflag=fullblock conv=fdatasync status=none")
  BEFORE="rm -f $W/tstate"
  t_recv=$(best_of "cat $W/stream | $BIN recv --to $TLOOP --state-file $W/tstate --quiet")
  unset BEFORE
  cmp -s -n "$VOL" "$TLOOP" "$W/raw" || { echo "bench: received loop device differs from the source" >&2; exit 1; }
  printf '   recv into a loop device (direct-io): dd %s MB/s (%.3fs); recv %s MB/s (%.3fs); ratio %s (target >= 0.95)\n' \
    "$(rate "$VOL" "$t_dd")" "$t_dd" "$(rate "$VOL" "$t_recv")" "$t_recv" "$(ratio "$VOL" "$t_recv" "$VOL" "$t_dd")"
fi
rm -f "$W/raw" "$W/stream"

# --- 3. incremental: bytes read -------------------------------------------------------------
drop_cache() { python3 -c "import os,sys
for p in sys.argv[1:]:
    fd=os.open(p,os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)" "$@"; }
# Only the pool data file leaves the cache; the metadata stays cached so the count is data only.
cat "$W/meta" >/dev/null
drop_cache "$W/data"
# The sender's I/O counters are added to its parent shell's when it is reaped.
IO=$(bash -c "$BIN send --metadata $W/meta --data $W/data --thin-id 2 --base-id 1 --size $((NB * BS)) --quiet >$W/incr; cat /proc/\$\$/io")
READ=$(echo "$IO" | awk '/^read_bytes/ {print $2}')
INCR=$(stat -c %s "$W/incr")
CHANGED=$((NC * BS))
printf '3. incremental 1%% (%d changed blocks = %d bytes, stream %d bytes): sender read %d bytes of pool data from storage (%.3f x changed)\n' \
  "$NC" "$CHANGED" "$INCR" "$READ" "$(echo "$READ / $CHANGED" | bc -l)"
