#!/bin/bash
# Diff benchmark: pools built by tools/mkmeta (an origin and its snapshot, 1% of the origin rewritten
# after the snapshot), thin_delta 0.9.0 against `thinsend-native diff` in the same run, warm cache,
# release build. Prints the median of REPEAT runs of each, the ratios and our peak anonymous memory.
#   bench/diff.sh            sizes 100k, 1M, 10M (runs of 16-256 blocks) + the 10M worst case
#   SIZES="1000000" bench/diff.sh
#   THIN_DELTA_RUST=/path/thin_delta OLD_BIN=/path/thinsend-native bench/diff.sh
#                            adds the Rust thin_delta 1.3.2 and an older build (changed-only), same run
# Cold runs (page cache dropped) are in bench/meta-cold.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-5}
SIZES=${SIZES:-"100000 1000000 10000000"}
WORK=${WORK:-$(mktemp -d /tmp/thinsend-bench-diff.XXXXXX)}
cargo build --release --quiet -p thinsend-native -p mkmeta
T=target/release/thinsend-native
M=target/release/mkmeta

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# cpu_of CMD...: median CPU seconds (user + system, all threads) of REPEAT runs: less sensitive than
# wall time to the load of other processes on a shared machine.
cpu_of() {
  for _ in $(seq "$REPEAT"); do
    python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{r.ru_utime + r.ru_stime:.4f}")' "$@"
  done | median
}
# time_of CMD...: median wall seconds of REPEAT runs, output to /dev/null
time_of() {
  for _ in $(seq "$REPEAT"); do
    local a b; a=$(date +%s.%N); "$@" > /dev/null; b=$(date +%s.%N)
    awk -v a="$a" -v b="$b" 'BEGIN{printf "%.4f\n", b-a}'
  done | median
}

# thin_delta 0.9.0 reads with O_DIRECT (its wall time includes device reads, its CPU time does not);
# rayon's idle workers spin a little (our CPU time can exceed threads x wall on short runs).
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); cpu = CPU seconds (user + system) of thin_delta and of changed-only"
printf '%-28s %10s %10s %8s %10s %8s %8s %10s %9s %9s %s\n' scenario thin_delta full ratio changed ratio reads anon_MiB \
  cpu_td cpu_ch "${THIN_DELTA_RUST:+rust_delta changed_vs_rust}${OLD_BIN:+ old_changed old_vs_new}"
run() { # NAME MAPPINGS WRITE_LINE
  local name=$1 n=$2 write=$3 img="$WORK/$1.img"
  cat > "$WORK/$name.spec" <<SPEC
pool data_block_size=128 nr_data_blocks=$((n + n / 50 + 1000)) seed=1
create 1
write 1 0+$n
snap 2 of 1
$write
SPEC
  "$M" generate "$WORK/$name.spec" -o "$img" > /dev/null
  cat "$img" > /dev/null
  # identical output first: a benchmark of a wrong answer means nothing
  thin_delta --snap1 2 --snap2 1 "$img" > "$WORK/want.xml"
  "$T" diff --snap1 2 --snap2 1 "$img" > "$WORK/got.xml"
  cmp -s "$WORK/want.xml" "$WORK/got.xml" || { echo "$name: output differs from thin_delta" >&2; exit 1; }
  local td full ch reads anon
  td=$(time_of thin_delta --snap1 2 --snap2 1 "$img")
  full=$(time_of "$T" diff --snap1 2 --snap2 1 "$img")
  ch=$(time_of "$T" diff --changed-only --snap1 2 --snap2 1 "$img")
  reads=$("$T" diff --changed-only --stats --snap1 2 --snap2 1 "$img" 2>&1 >/dev/null | sed 's/.*metadata_blocks_read=\([0-9]*\).*/\1/')
  anon=$(python3 bench/peak-anon.py "$T" diff --snap1 2 --snap2 1 "$img" 2>&1 | sed -n 's/peak_anon_kib=//p')
  local ctd cch
  ctd=$(REPEAT=1 cpu_of thin_delta --snap1 2 --snap2 1 "$img")
  cch=$(cpu_of "$T" diff --changed-only --snap1 2 --snap2 1 "$img")
  local extra=""
  if [ -n "${THIN_DELTA_RUST:-}" ]; then
    local tr; tr=$(time_of "$THIN_DELTA_RUST" --snap1 2 --snap2 1 "$img")
    extra="$(printf '%9.3fs %7.1fx' "$tr" "$(awk -v a="$tr" -v b="$ch" 'BEGIN{print a/b}')")"
  fi
  if [ -n "${OLD_BIN:-}" ]; then
    local old; old=$(time_of "$OLD_BIN" diff --changed-only --snap1 2 --snap2 1 "$img")
    extra="$extra $(printf '%9.4fs %7.2fx' "$old" "$(awk -v a="$old" -v b="$ch" 'BEGIN{print a/b}')")"
  fi
  printf '%-28s %9.3fs %9.3fs %7.1fx %9.4fs %7.0fx %8s %10.1f %8.3fs %8.4fs %s\n' "$name" "$td" "$full" \
    "$(awk -v a="$td" -v b="$full" 'BEGIN{print a/b}')" "$ch" "$(awk -v a="$td" -v b="$ch" 'BEGIN{print a/b}')" \
    "$reads" "$(awk -v k="$anon" 'BEGIN{print k/1024}')" "$ctd" "$cch" \
    "$extra"
}
for n in $SIZES; do
  run "runs16-256-$n" "$n" "write 1 random count=$((n / 100)) run=16..256 within=0+$n"
done
last=$(echo "$SIZES" | awk '{print $NF}')
run "scattered-$last" "$last" "write 1 random count=$((last / 100)) run=1..1 within=0+$last"
echo "targets at 10M (runs): full >= 3x, changed-only >= 50x, anon < 64 MiB; scattered: changed-only >= 20x"
echo "work dir: $WORK (remove when done)"
