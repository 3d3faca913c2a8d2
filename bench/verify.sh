#!/usr/bin/env bash
# verify of two equal files against cmp and against sha256sum of both, in one run.
#
# Builds the release binary and makes a pool with thin_restore: thin 1 maps a whole volume of
# BENCH_GIB GiB (default 4) on 64 KiB blocks, thin block i at data block i, so the pool data file
# holds the volume's bytes; the replica is a copy of them. Then, interleaved, best of BENCH_RUNS
# (default 3) each:
#   warm (both files in the page cache): `verify --metadata --data --thin-id 1 --to REPLICA` (xxh3,
#     the default, and --hash blake3),
#     `cmp DATA REPLICA`, `sha256sum DATA REPLICA` (one process, the files one after the other);
#   cold (both files dropped from the page cache before each run, POSIX_FADV_DONTNEED): the same.
# Prints MB/s of volume compared and the ratios verify/cmp and verify/sha256sum (target: verify at
# least as fast as cmp; the physical floor is reading both files once). verify's own report of
# bytes read on each side and digest bytes exchanged is printed too. The machine may be shared:
# read the ratios, which are measured in the same run. Needs thin_restore, python3 and about
# 2 x BENCH_GIB GiB free in BENCH_DIR (default /var/tmp).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
GIB=${BENCH_GIB:-4}
RUNS=${BENCH_RUNS:-3}
BS=65536
NB=$((GIB * 16384))

command -v thin_restore >/dev/null || { echo "bench: thin_restore not found (install thin-provisioning-tools)" >&2; exit 2; }
cargo build --release --quiet
BIN=$PWD/target/release/thinsend-native

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/thinsend-verify-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT

bench_pool "$W" "$NB" 0
bench_random_data "$W/data" "$NB"
cp "$W/data" "$W/replica"
VOL=$((NB * BS))

VERIFY="$BIN verify --metadata $W/meta --data $W/data --thin-id 1 --size $VOL --to $W/replica"
out=$($VERIFY --stats 2>&1) || { echo "bench: verify says the copies differ: $out" >&2; exit 1; }
echo "verify: $out"

now() { date +%s.%N; }
drop_cache() { python3 -c "import os,sys
for p in sys.argv[1:]:
    fd=os.open(p,os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)" "$@"; }
warm() { cat "$W/data" "$W/replica" >/dev/null; }
cold() { drop_cache "$W/data" "$W/replica"; }

declare -A BEST
run() {  # run NAME PREP CMD: one timed run, keeping the best per name
  local name=$1 prep=$2 cmd=$3 t0 t1 t
  $prep
  t0=$(now); bash -c "$cmd" >/dev/null; t1=$(now)
  t=$(echo "$t1 - $t0" | bc -l)
  if [ -z "${BEST[$name]:-}" ] || [ "$(echo "$t < ${BEST[$name]}" | bc -l)" = 1 ]; then BEST[$name]=$t; fi
}
for _ in $(seq "$RUNS"); do
  for mode in warm cold; do
    run "verify-$mode" $mode "$VERIFY"
    run "verify-blake3-$mode" $mode "$VERIFY --hash blake3"
    run "cmp-$mode" $mode "cmp $W/data $W/replica"
    run "sha256sum-$mode" $mode "sha256sum $W/data $W/replica"
  done
done

rate() { echo "scale=1; $VOL / $1 / 1000000" | bc -l; }
echo "verify benchmark: two equal files of $VOL bytes ($GIB GiB), best of $RUNS, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in warm cold; do
  v=${BEST[verify-$mode]} b=${BEST[verify-blake3-$mode]} c=${BEST[cmp-$mode]} s=${BEST[sha256sum-$mode]}
  printf '%s: verify %.3fs (%s MB/s), verify --hash blake3 %.3fs (%s MB/s), cmp %.3fs (%s MB/s), sha256sum %.3fs (%s MB/s)\n' \
    "$mode" "$v" "$(rate "$v")" "$b" "$(rate "$b")" "$c" "$(rate "$c")" "$s" "$(rate "$s")"
  printf '      verify is %.2fx cmp (target >= 1), %.2fx sha256sum; with blake3 %.2fx cmp\n' \
    "$(echo "$c / $v" | bc -l)" "$(echo "$s / $v" | bc -l)" "$(echo "$c / $b" | bc -l)"
done
