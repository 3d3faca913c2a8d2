#!/bin/bash
# `thinsend-native dump` against Debian's `thin_dump` (0.9.0) on a pool restored by thin_restore:
# two devices of 2 million mappings each, in runs of 1-8 blocks with gaps, the second a diverged
# snapshot of the first (half its runs rewritten elsewhere). Prints the median of RUNS timed runs
# of each (output to /dev/null, cache warm) and the speed-up.
#
#   bench/dump.sh                  # MAPPINGS=2000000 RUNS=5
#   MAPPINGS=200000 bench/dump.sh  # smaller pool
#   KEEP=/tmp/b bench/dump.sh      # keep (and reuse) the XML and image in /tmp/b
#   THIN_DUMP_RUST=/path/thin_dump OLD_BIN=/path/thinsend-native bench/dump.sh
#                                  # also the Rust thin_dump 1.3.2 and an older build, same run
set -euo pipefail
cd "$(dirname "$0")/.."
MAPPINGS=${MAPPINGS:-2000000}
RUNS=${RUNS:-5}
for t in thin_restore thin_dump; do
  command -v $t >/dev/null || [ -x /usr/sbin/$t ] || { echo "$t not installed (thin-provisioning-tools)" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin

cargo build --release --quiet --bin thinsend-native
BIN=$PWD/target/release/thinsend-native

if [ -n "${KEEP:-}" ]; then DIR=$KEEP; mkdir -p "$DIR"; else DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT; fi
XML=$DIR/pool-$MAPPINGS.xml IMG=$DIR/pool-$MAPPINGS.meta

if [ ! -s "$IMG" ]; then
  awk -v N="$MAPPINGS" 'BEGIN {
    srand(1);
    # Device 1: runs of 1-8 blocks, mostly contiguous, sometimes a gap; data allocated in order.
    v = 0; d = 0; n = 0; r = 0;
    while (n < N) {
      len = int(rand() * 8) + 1; if (n + len > N) len = N - n;
      vb[r] = v; db[r] = d; ln[r] = len; tm[r] = int(rand() * 3); r++;
      n += len; v += len + (rand() < 0.3 ? int(rand() * 16) : 0); d += len + (rand() < 0.1 ? 1 : 0);
    }
    nd = d;
    printf "<superblock uuid=\"\" time=\"5\" transaction=\"42\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"%d\">\n", 2 * nd + 16;
    printf "  <device dev_id=\"1\" mapped_blocks=\"%d\" transaction=\"0\" creation_time=\"0\" snap_time=\"3\">\n", N;
    for (i = 0; i < r; i++) emit(vb[i], db[i], ln[i], tm[i]);
    print "  </device>";
    # Device 2: the same virtual runs; about half of them rewritten to new data blocks at time 4.
    printf "  <device dev_id=\"2\" mapped_blocks=\"%d\" transaction=\"7\" creation_time=\"3\" snap_time=\"3\">\n", N;
    for (i = 0; i < r; i++) {
      if (rand() < 0.5) emit(vb[i], db[i], ln[i], tm[i]); else { emit(vb[i], nd, ln[i], 4); nd += ln[i]; }
    }
    print "  </device>";
    print "</superblock>";
  }
  function emit(v, d, len, t) {
    if (len == 1) printf "    <single_mapping origin_block=\"%d\" data_block=\"%d\" time=\"%d\"/>\n", v, d, t;
    else printf "    <range_mapping origin_begin=\"%d\" data_begin=\"%d\" length=\"%d\" time=\"%d\"/>\n", v, d, len, t;
  }' > "$XML"
  # Kernel-style inserts leave leaves about half full: ~1 metadata block per 100 mappings, plus room.
  truncate -s $(( (2 * MAPPINGS / 100 + 4096) * 4096 )) "$IMG"
  thin_restore -i "$XML" -o "$IMG"
fi

# Same output, or the timing means nothing.
cmp <("$BIN" dump "$IMG") <(thin_dump "$IMG") || { echo "outputs differ" >&2; exit 1; }

# Median wall time of RUNS runs, in seconds (the first, cache-warming run is not counted).
median() {
  "$@" >/dev/null
  for _ in $(seq "$RUNS"); do
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    echo $(( e - s ))
  done | sort -n | awk '{ t[NR] = $1 } END { printf "%.3f", t[int((NR + 1) / 2)] / 1e9 }'
}
if [ -n "${THIN_DUMP_RUST:-}" ]; then
  # 1.3.2 leaves out flags="0" and the last newline; otherwise the same document.
  cmp <("$BIN" dump "$IMG" | sed '1s/ flags="0"//' | head -c -1) <("$THIN_DUMP_RUST" "$IMG") ||
    { echo "outputs differ from THIN_DUMP_RUST" >&2; exit 1; }
fi
ours=$(median "$BIN" dump "$IMG")
theirs=$(median thin_dump "$IMG")
[ -n "${THIN_DUMP_RUST:-}" ] && rust=$(median "$THIN_DUMP_RUST" "$IMG")
[ -n "${OLD_BIN:-}" ] && old=$(median "$OLD_BIN" dump "$IMG")
lines=$(thin_dump "$IMG" | wc -l)
echo "pool: 2 devices x $MAPPINGS mappings, $lines lines of XML, image $(( $(stat -c %s "$IMG") >> 20 )) MiB"
echo "thinsend-native dump: ${ours} s   thin_dump: ${theirs} s   (median of $RUNS)"
awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "speed-up: %.2fx\n", b / a }'
[ -n "${THIN_DUMP_RUST:-}" ] && awk -v a="$ours" -v b="$rust" 'BEGIN { printf "Rust thin_dump: %.3f s   speed-up: %.2fx (target >= 4x at 2x10M)\n", b, b / a }'
[ -n "${OLD_BIN:-}" ] && awk -v a="$ours" -v b="$old" 'BEGIN { printf "old build: %.3f s   speed-up: %.2fx\n", b, b / a }'
true
