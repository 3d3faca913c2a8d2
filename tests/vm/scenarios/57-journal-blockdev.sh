# The undo journal of `recv --to DEV` on a real kernel block device (a thin LV used as a plain
# block device, state file given): a full stream, then an incremental; the receiver is killed
# (SIGKILL and SIGTERM alternately) at pseudo-random points while a slow pipe feeds it the
# incremental, for as many trials as fit in about 60 s (at least 5). After each kill a run that only
# recovers (empty input) leaves the device equal to the old or the new image, never a mixture, and
# the journal gone; then the same stream completes (old) or is refused as already applied (new).
# Also: a truncated incremental leaves the device byte-identical; `send` refuses a backward LVM
# incremental without --force, and with --force the backward stream takes the device back.
set -eu
vmt_two_vgs
vmt_thin_pool vga/pool 256M 64k
vmt_thin_pool vgb/pool 256M 64k
lvcreate -q -V 32M -T vga/pool -n o
vmt_pattern_write /dev/vga/o 0 7000 o 1                 # ~27 MiB
lvcreate -q -s -n s1 vga/o
for off in 100 2000 4500; do vmt_pattern_write /dev/vga/o $off 512 o 2; done
vmt_pattern_write /dev/vga/o 7300 256 o 2               # past the old data: new mappings
blkdiscard -o $((20 << 20)) -l $((2 << 20)) /dev/vga/o
lvcreate -q -s -n s2 vga/o
lvchange -q -ay -K vga/s1 vga/s2
sha() { sha256sum "$1" | cut -d' ' -f1; }
old=$(sha /dev/vga/s1)
new=$(sha /dev/vga/s2)
[ "$old" != "$new" ] || vmt_fail "s1 and s2 are equal"
lvcreate -q -V 32M -T vgb/pool -n t
T=/dev/vgb/t
mkdir -p /tmp/st
SF=/tmp/st/t.json
J=$SF.journal
R() { thinsend-native recv --to "$T" --state-file "$SF" "$@"; }
thinsend-native send vga/s1 | R
vmt_assert_eq "$(sha $T)" "$old" "full stream received on the block device"
thinsend-native send vga/s1 vga/s2 > inc.stream
# backward LVM incremental: refused without --force, sent with it
if thinsend-native send vga/s2 vga/s1 > back.stream 2> err.txt; then vmt_fail "backward LVM incremental sent without --force"; fi
cat err.txt
grep -q "backward incremental" err.txt || vmt_fail "backward refusal lacks 'backward incremental'"
thinsend-native send --force vga/s2 vga/s1 > back.stream
size=$(wc -c < inc.stream)
echo "incremental stream: $size bytes; backward stream: $(wc -c < back.stream) bytes"

# a truncated incremental changes nothing
for cut in 64 4096 $((size / 3)) $((size / 2 + 12345)) $((size - 1)); do
  if head -c "$cut" inc.stream | R 2> err.txt; then vmt_fail "truncated incremental ($cut of $size bytes) accepted"; fi
  cat err.txt
  vmt_assert_eq "$(sha $T)" "$old" "device unchanged after an incremental cut at $cut of $size bytes"
  [ ! -e "$J" ] || vmt_fail "journal $J left after a truncated stream"
done
R < inc.stream
vmt_assert_eq "$(sha $T)" "$new" "incremental applied"
R < back.stream
vmt_assert_eq "$(sha $T)" "$old" "backward incremental (send --force) took the device back"

# kills at pseudo-random points of the incremental, fed through a slow pipe (64 KiB per dd)
n=$(( (size + 65535) / 65536 ))
t0=$(date +%s)
trial=0 n_old=0 n_new=0 n_rolled=0
echo "trial sig chunks_fed/total delay rc journal_left after_recovery" > "$OUT/trials.txt"
while :; do
  el=$(( $(date +%s) - t0 ))
  if [ $trial -ge 5 ] && [ $el -ge 60 ]; then break; fi
  [ $trial -lt 40 ] || break
  trial=$((trial + 1))
  if [ $((trial % 2)) = 1 ]; then sig=KILL; else sig=TERM; fi
  # shellcheck disable=SC2046
  set -- $(awk -v s=$trial -v n=$n 'BEGIN { srand(5700 + s); printf "%d %d\n", 1 + int(rand() * (n + 2)), int(rand() * 4) }')
  k=$1 d=$2
  rm -f p; mkfifo p
  # the binary itself in the background ($! of a backgrounded shell function is a subshell's)
  thinsend-native recv --to "$T" --state-file "$SF" < p > /dev/null 2> r.err &
  rpid=$!
  ( i=0
    while [ $i -lt "$k" ]; do dd if=inc.stream bs=65536 skip=$i count=1 2>/dev/null || exit 0; i=$((i + 1)); done
    sleep "0.$d"
    kill -$sig $rpid 2>/dev/null
    exit 0 ) > p &
  fpid=$!
  rc=0; wait $rpid || rc=$?
  wait $fpid || true
  jl=no; [ -e "$J" ] && jl=yes
  # recovery only: a leftover journal is played back, then the empty input is refused
  tries=0
  while :; do
    if R < /dev/null 2> rec.err; then vmt_fail "trial $trial: empty input accepted"; fi
    grep -q "device is in use" rec.err && [ $tries -lt 20 ] || break
    tries=$((tries + 1)); sleep 0.2
  done
  [ $tries = 0 ] || echo "trial $trial: the device was still held $tries times after wait"
  grep -q "rolled back an interrupted receive" rec.err && n_rolled=$((n_rolled + 1))
  [ $jl = no ] || grep -q "rolled back an interrupted receive" rec.err \
    || vmt_fail "trial $trial: journal left but not rolled back: $(cat rec.err)"
  [ ! -e "$J" ] || vmt_fail "trial $trial: journal still there after recovery: $(cat rec.err)"
  h=$(sha $T)
  if [ "$h" = "$old" ]; then
    st=old; n_old=$((n_old + 1))
    R < inc.stream 2> err.txt || vmt_fail "trial $trial: the next receive failed: $(cat err.txt)"
  elif [ "$h" = "$new" ]; then
    st=new; n_new=$((n_new + 1))
    if R < inc.stream 2> err.txt; then vmt_fail "trial $trial: the incremental applied twice"; fi
    grep -q "the target holds" err.txt || vmt_fail "trial $trial: new image but state disagrees: $(cat err.txt)"
  else
    cat r.err rec.err
    vmt_fail "trial $trial (SIG$sig after $k/$n chunks, rc $rc): device is a MIXTURE of old and new after recovery"
  fi
  vmt_assert_eq "$(sha $T)" "$new" "trial $trial: SIG$sig after $k/$n chunks +0.${d}s (rc $rc, journal left $jl, $st after recovery), then received"
  echo "$trial $sig $k/$n 0.$d $rc $jl $st" >> "$OUT/trials.txt"
  R < back.stream 2> err.txt || vmt_fail "trial $trial: reset with the backward stream failed: $(cat err.txt)"
  [ "$(sha $T)" = "$old" ] || vmt_fail "trial $trial: reset with the backward stream did not give the old image"
done
el=$(( $(date +%s) - t0 ))
echo "$trial trials in ${el}s: $n_old old and $n_new new after recovery, $n_rolled rolled back from a journal" | tee -a "$OUT/trials.txt"
[ $n_rolled -gt 0 ] || vmt_fail "no trial killed the receiver mid-apply (nothing was rolled back)"
