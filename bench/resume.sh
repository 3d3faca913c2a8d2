#!/usr/bin/env bash
# Resume under fire (issue 11's must-show): a full send of a BENCH_GIB GiB volume (default 4) into a
# file, the middle process of `send | MIDDLE | recv -s` killed at BENCH_KILLS random points (default
# 10), each run resumed with the token `recv --resume-token` prints; then the same for an
# incremental (1% of the blocks changed, scattered) onto the result. Checks the final sha256 against
# the source image and that the bytes the sender wrote over all attempts are at most the stream plus
# one checkpoint interval (32 MiB) per interruption; prints each attempt and the totals.
#
# MIDDLE is a small python relay standing in for `cat`: it counts the bytes it reads from send and
# SIGKILLs itself after a random number of them (a uniform point in what is left of the stream), so
# the kill lands mid-stream whatever the machine's speed. Needs thin_restore, python3, sha256sum
# and about 3 x BENCH_GIB GiB free in BENCH_DIR (default /var/tmp).
set -euo pipefail

cd "$(dirname "$0")/.."
. bench/lib.sh
GIB=${BENCH_GIB:-4}
KILLS=${BENCH_KILLS:-10}
SEED=${BENCH_SEED:-11}
BS=65536
NB=$((GIB * 16384))  # 64 KiB blocks in the volume
NC=$((NB / 100))     # changed blocks of the incremental
INTERVAL=$((32 << 20))

command -v thin_restore >/dev/null || { echo "bench: thin_restore not found (install thin-provisioning-tools)" >&2; exit 2; }
cargo build --release --quiet
BIN=$PWD/target/release/thinsend-native

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/thinsend-resume.XXXXXX")
trap 'rm -rf "$W"' EXIT

# --- the pool: thin 1 maps the whole volume, thin 2 rewrites every 100th block ----------------
bench_pool "$W" "$NB" "$NC"
bench_random_data "$W/data" $((NB + NC))
VOL=$((NB * BS))

# The images' sha256: thin 1 is the first VOL bytes of the data file; thin 2 has its changed
# blocks from the data blocks past the volume.
SHA1=$(head -c "$VOL" "$W/data" | sha256sum | cut -d' ' -f1)
SHA2=$(python3 - "$W/data" "$NB" "$NC" <<'EOF'
import hashlib, sys
path, nb, nc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bs, step = 65536, nb // nc
changed = {k * step + step // 2: nb + k for k in range(nc)}
h = hashlib.sha256()
with open(path, 'rb') as f:
    for b in range(nb):
        f.seek(changed.get(b, b) * bs)
        h.update(f.read(bs))
print(h.hexdigest())
EOF
)

cat >"$W/middle.py" <<'EOF'
import os, signal, sys
cut, count = int(sys.argv[1]), sys.argv[2]
n = 0
try:
    while True:
        b = os.read(0, 1 << 16)
        if not b:
            break
        n += len(b)
        if cut and n >= cut:
            open(count, 'w').write(str(n))
            os.kill(os.getpid(), signal.SIGKILL)
        os.write(1, b)
except BrokenPipeError:
    pass
open(count, 'w').write(str(n))
EOF

# run NAME EXPECTED_SHA TARGET SEND_ARGS...: the interrupted and resumed transfer.
run() {
  local name=$1 want=$2 target=$3; shift 3
  local stream total=0 kills=$KILLS attempt=0 tok="" t0 t1 cut done=0 sent
  stream=$("$BIN" "$@" --dry-run | sed -n 's/.*; \([0-9]*\) stream bytes$/\1/p')
  t0=$(date +%s.%N)
  while :; do
    attempt=$((attempt + 1))
    cut=0
    if [ "$kills" -gt 0 ]; then
      cut=$(python3 -c "import random; random.seed($SEED * 1000 + $attempt + ${#name}); print(1 + random.randrange(max(2, ($stream - $done) * 9 // 10)))")
    fi
    local args=("$@")
    [ -n "$tok" ] && args+=(--resume "$tok")
    set +e
    "$BIN" "${args[@]}" 2>/dev/null | python3 "$W/middle.py" "$cut" "$W/count" | "$BIN" recv -s --quiet --to "$target" 2>"$W/recv.err"
    local rc=$?
    set -e
    sent=$(cat "$W/count")
    total=$((total + sent)); done=$((done + sent))
    if [ "$rc" = 0 ]; then
      [ "$kills" = 0 ] || { echo "$name: attempt $attempt completed although its middle process was killed" >&2; exit 1; }
      printf '  %s attempt %d: %d bytes, completed\n' "$name" "$attempt" "$sent"
      break
    fi
    [ "$kills" -gt 0 ] || { echo "$name: attempt $attempt failed:" >&2; cat "$W/recv.err" >&2; exit 1; }
    kills=$((kills - 1))
    tok=$("$BIN" recv --resume-token --to "$target")
    grep -q -- "$tok" "$W/recv.err" || { echo "$name: the token was not printed on stderr" >&2; exit 1; }
    printf '  %s attempt %d: middle killed after %d bytes; resume at byte %s\n' "$name" "$attempt" "$sent" \
      "$(python3 -c "import base64,json,sys; t=sys.argv[1][5:]; b=base64.urlsafe_b64decode(t+'='*(-len(t)%4)); print(json.loads(b[:-16])['from_offset'])" "$tok")"
  done
  t1=$(date +%s.%N)
  local got
  got=$(sha256sum "$target" | cut -d' ' -f1)
  local bound=$((stream + KILLS * INTERVAL))
  printf '%s: stream %d bytes, sent %d bytes over %d attempts (%.3f x the stream; overhead %d bytes, %d per interruption; bound %d), %.1fs\n' \
    "$name" "$stream" "$total" "$attempt" "$(echo "$total / $stream" | bc -l)" $((total - stream)) $(((total - stream) / KILLS)) "$bound" "$(echo "$t1 - $t0" | bc -l)"
  [ "$got" = "$want" ] || { echo "$name: sha256 $got, expected $want" >&2; exit 1; }
  echo "$name: sha256 $got matches the source"
  [ "$total" -le "$bound" ] || { echo "$name: sent more than the bound" >&2; exit 1; }
}

echo "resume bench: volume $VOL bytes ($GIB GiB), $KILLS interruptions per transfer, checkpoint interval $INTERVAL bytes or 5 s"
SEND=(send --metadata "$W/meta" --data "$W/data" --size "$VOL" --quiet)
run full "$SHA1" "$W/target" "${SEND[@]}" --thin-id 1
run incremental "$SHA2" "$W/target" "${SEND[@]}" --thin-id 2 --base-id 1
