#!/usr/bin/env bash
# An incremental receive into a large existing file on a filesystem without reflink: today's binary
# (OLD, default /tmp/thinsend-old) against this tree's (NEW) in the same run.
#
# Makes a pool with thin_restore: thin 1 maps a whole volume of BENCH_GIB GiB (default 4) on 64 KiB
# blocks, thin 2 is a snapshot of it with BENCH_CHANGED blocks (default 6, i.e. 384 KiB) rewritten,
# scattered. Makes an ext4 filesystem in a loop-mounted image (no reflink), receives thin 1 into one
# file per binary there (each binary its own), then times the incremental 1 -> 2 into each, with the
# page cache dropped before: time, the receiver's bytes written to storage, and the peak of the
# filesystem's used space sampled every 20 ms. Prints both and the ratios old/new. Needs root
# (mount, drop_caches), thin_restore, python3, bc, and about 3 x BENCH_GIB GiB free in BENCH_DIR
# (default /var/tmp).
set -euo pipefail

cd "$(dirname "$0")/.."
GIB=${BENCH_GIB:-4}
NCH=${BENCH_CHANGED:-6}
NB=$((GIB * 16384))
OLD=${OLD:-/tmp/thinsend-old}

command -v thin_restore >/dev/null || { echo "bench: thin_restore not found (install thin-provisioning-tools)" >&2; exit 2; }
[ -x "$OLD" ] || { echo "bench: no old binary at $OLD (set OLD=...)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench: needs root (loop mount, drop_caches)" >&2; exit 2; }
cargo build --release --quiet
NEW=$PWD/target/release/thinsend-native

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/thinsend-recvbench.XXXXXX")
MNT=$W/mnt
cleanup() { umount "$MNT" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

. bench/lib.sh
bench_pool "$W" "$NB" "$NCH"
# Data: random bytes (a volume of zeros would hide nothing, but real data is what a replica holds).
bench_random_data "$W/data.img" $((NB + NCH))
send() { "$NEW" send --metadata "$W/meta" --data "$W/data.img" --size $((NB * 65536)) --quiet "$@"; }
send --thin-id 1 >"$W/full.stream"
send --thin-id 2 --base-id 1 >"$W/inc.stream"
rm "$W/data.img"
echo "volume $GIB GiB, incremental stream $(stat -c %s "$W/inc.stream") bytes ($NCH blocks of 64 KiB changed)"

truncate -s $((3 * GIB + 2))G "$W/ext4.img"
mkfs.ext4 -q "$W/ext4.img"
mkdir "$MNT"
mount -o loop "$W/ext4.img" "$MNT"
used() { df --output=used -B1 "$MNT" | tail -1 | tr -d ' '; }

# One incremental with binary $1 into $2: prints "seconds peak_extra_bytes written_bytes" (the peak
# of the filesystem's used space sampled every 20 ms, and the receiver's block-layer writes, from
# getrusage ru_oublock: a short-lived journal can fall between two samples, not out of that count).
measure() {
  local bin=$1 target=$2 before peak pid u t w
  sync; echo 3 >/proc/sys/vm/drop_caches
  before=$(used); peak=$before
  python3 - "$bin" "$target" "$W/inc.stream" >"$W/measure.out" <<'EOF2' &
import resource, subprocess, sys, time
t0 = time.monotonic()
with open(sys.argv[3], 'rb') as f:
    subprocess.run([sys.argv[1], 'recv', '--to', sys.argv[2], '--quiet'], stdin=f, check=True)
print(time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock * 512)
EOF2
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    u=$(used); [ "$u" -gt "$peak" ] && peak=$u
    sleep 0.02
  done
  wait "$pid"
  u=$(used); [ "$u" -gt "$peak" ] && peak=$u
  read -r t w <"$W/measure.out"
  echo "$t $((peak - before)) $w"
}

for who in old new; do
  bin=$OLD; [ $who = new ] && bin=$NEW
  "$bin" recv --to "$MNT/$who.img" --quiet <"$W/full.stream"
done
sync
read -r t_old s_old w_old < <(measure "$OLD" "$MNT/old.img")
read -r t_new s_new w_new < <(measure "$NEW" "$MNT/new.img")
cmp "$MNT/old.img" "$MNT/new.img" || { echo "bench: the two results differ" >&2; exit 1; }
printf 'old: %8.3f s  peak extra space %12d bytes  written %12d bytes\n' "$t_old" "$s_old" "$w_old"
printf 'new: %8.3f s  peak extra space %12d bytes  written %12d bytes\n' "$t_new" "$s_new" "$w_new"
printf 'ratio old/new: time %.1fx, bytes written %.1fx, peak extra space %.1fx\n' \
  "$(echo "$t_old / $t_new" | bc -l)" "$(echo "$w_old / ($w_new + ($w_new == 0))" | bc -l)" \
  "$(echo "$s_old / ($s_new + ($s_new == 0))" | bc -l)"
