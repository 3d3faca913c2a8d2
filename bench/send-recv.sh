#!/usr/bin/env bash
# Send/receive throughput against cat and dd, and bytes read by an incremental send.
#
# Builds the release binary, makes a pool with thin_restore: thin 1 maps a whole volume of
# BENCH_GIB GiB (default 4) on 64 KiB blocks, thin 2 is a snapshot of it with 1% of the blocks
# rewritten (every 100th block, so the change is scattered). The pool data file is filled with
# random bytes and read once so it is in the page cache (warm), then prints:
#   1. full send of thin 1 through a pipe to `cat >/dev/null`, against `cat` of the pool data file
#      through the same pipe: throughput ratio (target >= 0.9);
#   2. recv of that stream (read by `cat` from a cached file) into a new file, against
#      `dd bs=1M conv=fdatasync` writing the same bytes from the same kind of pipe into a new file
#      (both fdatasync at the end): throughput ratio (target >= 0.8);
#   3. an incremental send thin 1 -> thin 2 with the pool data file dropped from the page cache first
#      (POSIX_FADV_DONTNEED on that file only) and the metadata cached: the storage bytes the sender
#      read (read_bytes of /proc/PID/io, which includes readahead) against the changed bytes.
# Each timing is the best of BENCH_RUNS (default 3). Needs thin_restore (thin-provisioning-tools),
# python3, about 3 x BENCH_GIB GiB free in BENCH_DIR (default /var/tmp).
set -euo pipefail

cd "$(dirname "$0")/.."
GIB=${BENCH_GIB:-4}
RUNS=${BENCH_RUNS:-3}
BS=65536
NB=$((GIB * 16384))  # 64 KiB blocks in the volume
NC=$((NB / 100))      # changed blocks

command -v thin_restore >/dev/null || { echo "bench: thin_restore not found (install thin-provisioning-tools)" >&2; exit 2; }
cargo build --release --quiet
BIN=$PWD/target/release/thinsend-native

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/thinsend-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT

# --- the pool -------------------------------------------------------------------------------
python3 - "$NB" "$NC" >"$W/pool.xml" <<'EOF'
import sys
nb, nc = int(sys.argv[1]), int(sys.argv[2])
step = nb // nc
out = ['<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="%d">' % (nb + nc)]
out.append('  <device dev_id="1" mapped_blocks="%d" transaction="0" creation_time="0" snap_time="1">' % nb)
out.append('    <range_mapping origin_begin="0" data_begin="0" length="%d" time="0"/>' % nb)
out.append('  </device>')
out.append('  <device dev_id="2" mapped_blocks="%d" transaction="1" creation_time="1" snap_time="1">' % nb)
b = 0
for k in range(nc):
    c = k * step + step // 2          # the changed block
    if c > b:
        out.append('    <range_mapping origin_begin="%d" data_begin="%d" length="%d" time="0"/>' % (b, b, c - b))
    out.append('    <single_mapping origin_block="%d" data_block="%d" time="1"/>' % (c, nb + k))
    b = c + 1
if b < nb:
    out.append('    <range_mapping origin_begin="%d" data_begin="%d" length="%d" time="0"/>' % (b, b, nb - b))
out.append('  </device>')
out.append('</superblock>')
print("\n".join(out))
EOF
truncate -s 64M "$W/meta"
thin_restore -q -i "$W/pool.xml" -o "$W/meta" 2>/dev/null || thin_restore -i "$W/pool.xml" -o "$W/meta" >/dev/null
head -c $((64 << 20)) /dev/urandom >"$W/seed"
for _ in $(seq $(((NB + NC + 1023) / 1024))); do cat "$W/seed"; done >"$W/data"
truncate -s $(((NB + NC) * BS)) "$W/data"   # exactly the pool's data area, as a data device is
rm "$W/seed"
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

# --- 1. full send vs cat ----------------------------------------------------------------------
SEND="$BIN send --metadata $W/meta --data $W/data --thin-id 1 --size $((NB * BS)) --quiet"
STREAM_BYTES=$($BIN send --metadata "$W/meta" --data "$W/data" --thin-id 1 --size $((NB * BS)) --dry-run | tail -1 | sed 's/.*; \([0-9]*\) stream bytes/\1/')
t_cat=$(best_of "cat $W/data | cat >/dev/null")
t_send=$(best_of "$SEND | cat >/dev/null")
t_send_lb=$(best_of "$BIN send --metadata $W/meta --data $W/data --thin-id 1 --size $((NB * BS)) --stream-format linbit --quiet | cat >/dev/null")
r_send=$(ratio "$STREAM_BYTES" "$t_send" "$DATA_BYTES" "$t_cat")
printf '1. full send through a pipe:  cat %s MB/s (%s bytes in %.3fs); send native %s MB/s (%s stream bytes in %.3fs); send linbit %s MB/s\n' \
  "$(rate "$DATA_BYTES" "$t_cat")" "$DATA_BYTES" "$t_cat" "$(rate "$STREAM_BYTES" "$t_send")" "$STREAM_BYTES" "$t_send" "$(rate "$VOL" "$t_send_lb")"
printf '   ratio send/cat = %s (target >= 0.9)\n' "$r_send"

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
printf '   ratio recv/dd = %s (target >= 0.8)\n' "$r_recv"
rm -f "$W/out" "$W/out.dd" "$W/raw" "$W/stream"

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
