#!/usr/bin/env bash
# Built-in compression against a zstd pipeline, in one run on one volume.
#
# Makes a pool with thin_restore: thin 1 maps a whole volume of BENCH_GIB GiB (default 4) on 64 KiB
# blocks; its data is half random bytes and half compressible text (alternating 32 MiB stretches).
# The pool data file is read once so it is in the page cache. Then, alternating, BENCH_RUNS times
# (default 2), best time of each:
#   A. send --compress zstd:3 | recv --to FILE
#   B. send | zstd -3 -T0 | zstd -d | recv --to FILE
# and prints both throughputs (volume bytes / wall time), their ratio (target >= 1.5), the CPU
# seconds of each, and the compressed sizes (A's stream against `send | zstd -3 -T0`, target within
# 5%). Each received file is compared with the volume. Needs thin_restore, zstd, python3 and about
# 3 x BENCH_GIB GiB free in BENCH_DIR (default /var/tmp). BIN=path picks the binary (default: build).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
GIB=${BENCH_GIB:-4}
RUNS=${BENCH_RUNS:-2}
BS=65536
NB=$((GIB * 16384))
for t in thin_restore zstd python3; do
  command -v "$t" >/dev/null || { echo "bench: $t not found (scripts/install-deps.sh)" >&2; exit 2; }
done
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; BIN=$PWD/target/release/thinsend-native; fi

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/thinsend-zbench.XXXXXX")
trap 'rm -rf "$W"' EXIT
bench_pool "$W" "$NB" 0
# 32 MiB of random bytes, then 32 MiB of text (numbered log-like lines), repeated.
head -c $((32 << 20)) /dev/urandom >"$W/rand"
python3 - "$W/text" <<'PY'
import sys, random
r = random.Random(1)
words = "thin pool volume snapshot block metadata device mapping transaction data send receive".split()
out, n = [], 0
while n < 32 << 20:
    line = "%08d %s %s %s %d\n" % (len(out), r.choice(words), r.choice(words), r.choice(words), r.randrange(100000))
    out.append(line); n += len(line)
open(sys.argv[1], "w").write("".join(out)[: 32 << 20])
PY
for _ in $(seq $((GIB * 16))); do cat "$W/rand" "$W/text"; done >"$W/data"
rm "$W/rand" "$W/text"
VOL=$((NB * BS))
cat "$W/data" >/dev/null

SEND="$BIN send --metadata $W/meta --data $W/data --thin-id 1 --size $VOL --quiet"
now() { date +%s.%N; }
# timed NAME CMD: wall and CPU seconds (user+sys of the whole pipeline) into T_NAME / C_NAME
timed() {
  rm -f "$W/out"; sync
  local t0 t1 cpu
  t0=$(now)
  cpu=$( { /usr/bin/time -f '%U %S' bash -c "$2" ; } 2>&1 >/dev/null | tail -1 | awk '{print $1 + $2}')
  t1=$(now)
  cmp -s "$W/out" "$W/data" || { echo "bench: $1: received image differs" >&2; exit 1; }
  local t; t=$(echo "$t1 - $t0" | bc -l)
  local best="T_$1"
  if [ -z "${!best:-}" ] || [ "$(echo "$t < ${!best}" | bc -l)" = 1 ]; then
    printf -v "T_$1" '%s' "$t"; printf -v "C_$1" '%s' "$cpu"
  fi
}
echo "compression bench: volume $VOL bytes ($GIB GiB, half random, half text), cached, best of $RUNS, load: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$RUNS"); do
  timed builtin "$SEND --compress zstd:3 | $BIN recv --to $W/out --quiet"
  timed pipeline "$SEND | zstd -q -3 -T0 | zstd -q -d | $BIN recv --to $W/out --quiet"
done
Z_BUILTIN=$($SEND --compress zstd:3 | wc -c)
Z_PIPE=$($SEND | zstd -q -3 -T0 | wc -c)
rate() { echo "scale=1; $1 / $2 / 1000000" | bc -l; }
printf 'A. send --compress zstd:3 | recv:                    %s MB/s (%.2fs wall, %.2f CPU s), stream %s bytes\n' \
  "$(rate "$VOL" "$T_builtin")" "$T_builtin" "$C_builtin" "$Z_BUILTIN"
printf 'B. send | zstd -3 -T0 | zstd -d | recv:              %s MB/s (%.2fs wall, %.2f CPU s), stream %s bytes\n' \
  "$(rate "$VOL" "$T_pipeline")" "$T_pipeline" "$C_pipeline" "$Z_PIPE"
printf '   throughput A/B = %s (target >= 1.5); size A/B = %s (target within 5%%)\n' \
  "$(echo "scale=3; $T_pipeline / $T_builtin" | bc -l)" "$(echo "scale=4; $Z_BUILTIN / $Z_PIPE" | bc -l)"
