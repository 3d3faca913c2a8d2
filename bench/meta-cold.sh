#!/bin/bash
# Cold and warm changed-only diff: an origin of N mappings and its snapshot, 100 single blocks of
# the origin rewritten after the snapshot (pools built by tools/mkmeta on a real filesystem: a file
# on tmpfs is never cold). Cold = the image's pages dropped from the page cache (fsync, then
# posix_fadvise DONTNEED) before each run. thin_delta 0.9.0 (and THIN_DELTA_RUST, the Rust 1.3.2
# binary, when given) against `thinsend-native diff --changed-only`, and OLD_BIN (an older build)
# when given, all interleaved in one run; output identity checked first. Prints medians of REPEAT,
# and for each pool mkmeta's wall time and peak RSS (ru_maxrss, which also counts the pages of its
# map of the image it touched) and the image's size.
#   bench/meta-cold.sh                      10M mappings
#   BIG=1 bench/meta-cold.sh                also 250M (4.8 GiB of metadata)
#   HUGE=1 bench/meta-cold.sh               also 250M and 10^9 (15.9 GiB of metadata: the format's
#                                           limit; needs ~17 GiB free in WORK); thin_delta takes
#                                           minutes there and is skipped; the output is checked to
#                                           be the 100 changed blocks instead
#   SIZES="1000000" OLD_BIN=/path/thinsend-before bench/meta-cold.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-5}
SIZES=${SIZES:-10000000}
[ -n "${BIG:-}${HUGE:-}" ] && SIZES="$SIZES 250000000"
[ -n "${HUGE:-}" ] && SIZES="$SIZES 1000000000"
# Above this many mappings thin_delta (minutes) is skipped.
DELTA_MAX=${DELTA_MAX:-250000000}
WORK=${WORK:-$(mktemp -d /var/tmp/thinsend-bench-cold.XXXXXX)}
fs=$(stat -f -c %T "$WORK")
[ "$fs" = tmpfs ] && { echo "$WORK is on tmpfs: nothing there is ever cold; set WORK" >&2; exit 1; }
[ -z "${KEEP:-}" ] && trap 'rm -rf "$WORK"' EXIT
cargo build --release --quiet -p thinsend-native -p mkmeta
T=$PWD/target/release/thinsend-native
M=$PWD/target/release/mkmeta
export PATH=$PATH:/usr/sbin

drop() { python3 -c 'import os,sys
fd=os.open(sys.argv[1],os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# measured LABEL CMD...: runs CMD (output discarded) and prints LABEL with its wall time and peak RSS.
measured() {
  local label=$1; shift
  python3 - "$label" "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, check=True)
wall = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{sys.argv[1]}: {wall:.1f} s, peak RSS {rss:.0f} MiB")
PY
}
secs() { local a b; a=$(date +%s%N); "$@" > /dev/null; b=$(date +%s%N); echo $(( (b - a) / 1000 )); }
# bench IMG CMD...: "warm_ms cold_ms", medians of REPEAT runs each
bench() {
  local img=$1; shift
  local w c
  w=$(for _ in $(seq "$REPEAT"); do secs "$@"; done | median)
  c=$(for _ in $(seq "$REPEAT"); do drop "$img"; secs "$@"; done | median)
  awk -v w="$w" -v c="$c" 'BEGIN{printf "%.1f %.1f", w/1000, c/1000}'
}

if [ -n "${HUGE:-}" ]; then
  avail=$(df --output=avail -B1G "$WORK" | tail -1)
  [ "$avail" -ge 18 ] || { echo "HUGE=1 needs ~17 GiB free in $WORK ($avail GiB)" >&2; exit 1; }
fi
echo "work dir $WORK on $(df --output=source "$WORK" | tail -1) ($fs); load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %-16s %10s %10s %8s %8s\n' mappings tool warm_ms cold_ms reads levels
for n in $SIZES; do
  img=$WORK/c100-$n.img
  cat > "$WORK/c100-$n.spec" <<SPEC
pool data_block_size=128 nr_data_blocks=$((n + n / 50 + 1000)) seed=1
create 1
write 1 0+$n
snap 2 of 1
write 1 random count=100 run=1..1 within=0+$n
SPEC
  mk=$(measured "mkmeta generate" "$M" generate "$WORK/c100-$n.spec" -o "$img")
  echo "$n: $mk, image $(awk -v b="$(stat -c %s "$img")" 'BEGIN{printf "%.2f GiB", b/2^30}')"
  args=(--snap1 2 --snap2 1 "$img")
  "$T" diff --changed-only "${args[@]}" > "$WORK/got.xml"
  if [ "$n" -le "$DELTA_MAX" ]; then
    # Same ranges as thin_delta (whose same ranges a changed-only diff leaves out).
    thin_delta "${args[@]}" | grep -v '<same ' > "$WORK/want.xml"
    cmp -s "$WORK/want.xml" "$WORK/got.xml" || { echo "$n: changed-only output differs from thin_delta" >&2; exit 1; }
  else
    # thin_delta would take minutes: the output must be the 100 rewritten blocks, one range each.
    d=$(grep -c '<different begin="[0-9]*" length="1"/>' "$WORK/got.xml" || true)
    [ "$(grep -c '<different\|<same\|<left_only\|<right_only' "$WORK/got.xml")" = 100 ] && [ "$d" = 100 ] ||
      { echo "$n: changed-only output is not 100 single changed blocks" >&2; exit 1; }
  fi
  stats=$("$T" diff --changed-only --stats "${args[@]}" 2>&1 >/dev/null)
  drop "$img"
  cold=$("$T" diff --changed-only --stats "${args[@]}" 2>&1 >/dev/null)
  reads=$(sed 's/.*metadata_blocks_read=\([0-9]*\).*/\1/' <<< "$stats")
  levels=$(sed 's/.*levels_waited=\([0-9]*\).*/\1/' <<< "$cold")
  row() { printf '%-12s %-16s %10s %10s %8s %8s\n' "$n" "$1" $2 "${3:-}" "${4:-}"; }
  row "thinsend-native" "$(bench "$img" "$T" diff --changed-only "${args[@]}")" "$reads" "$levels"
  if [ -n "${OLD_BIN:-}" ]; then
    "$OLD_BIN" diff --changed-only "${args[@]}" | cmp -s - "$WORK/got.xml" || { echo "OLD_BIN output differs" >&2; exit 1; }
    row "old build" "$(bench "$img" "$OLD_BIN" diff --changed-only "${args[@]}")"
  fi
  if [ "$n" -gt "$DELTA_MAX" ]; then
    echo "$n: thin_delta skipped (minutes at this size, ~4x its 250M time); output checked as 100 single blocks"
  else
    row "thin_delta" "$(REPEAT=1 bench "$img" thin_delta "${args[@]}")"
  fi
  if [ -n "${THIN_DELTA_RUST:-}" ] && [ "$n" -le "$DELTA_MAX" ]; then
    row "thin_delta-rust" "$(REPEAT=1 bench "$img" "$THIN_DELTA_RUST" "${args[@]}")"
  fi
  rm -f "$img"
done
echo "target (250M): cold changed-only <= 50 ms with the reads unchanged; levels = critical path in reads"
