# Resumable receive into an LV (docs/STREAM.md §7): a full stream into a new LV, its transport (the
# middle `cat` of send | cat | recv -s) killed twice mid-stream, resumed each time with the token
# recv prints; the LV ends with the snapshot's sha256 and nothing is left behind. Then an
# incremental onto it interrupted the same way: a plain stream onto the partial state is refused,
# and `recv --abort` leaves the target exactly as it was.
set -eu
export THINSEND_STATE_DIR=/tmp/thinsend-state
vmt_two_vgs
vmt_thin_pool vga/pool 512M 64k
vmt_thin_pool vgb/pool 512M 64k
lvcreate -q -V 256M -T vga/pool -n o
vmt_pattern_write /dev/vga/o 0 40000 o 1       # ~160 MiB to send
lvcreate -q -s -n s1 vga/o
vmt_pattern_write /dev/vga/o 0 30000 o 2       # ~120 MiB changed
lvcreate -q -s -n s2 vga/o
sha_of() { lvchange -q -ay -K "$1"; sha256sum "/dev/$1" | cut -d' ' -f1; }
want1=$(sha_of vga/s1)
want2=$(sha_of vga/s2)

# interrupted PREV_TOKEN RECV_ARGS -- SEND_ARGS: send | cat | recv -s, the cat killed once the
# receive made a checkpoint past PREV_TOKEN's (its token changed). Fails if it completed anyway.
interrupted() {
  local prev=$1 rargs="" rc t
  shift
  while [ "$1" != "--" ]; do rargs="$rargs $1"; shift; done; shift
  rm -f /tmp/p1 /tmp/p2; mkfifo /tmp/p1 /tmp/p2
  thinsend-native send "$@" > /tmp/p1 2> send.err &
  local spid=$!
  cat < /tmp/p1 > /tmp/p2 &
  local cpid=$!
  # shellcheck disable=SC2086
  thinsend-native recv -s $rargs < /tmp/p2 2> recv.err &
  local rpid=$!
  local i=0
  while [ $i -lt 600 ]; do
    t=$(thinsend-native recv --resume-token vgb/r 2>/dev/null || true)
    [ -n "$t" ] && [ "$t" != "$prev" ] && break
    sleep 0.1; i=$((i + 1))
  done
  sleep 0.3
  kill -KILL $cpid
  rc=0; wait $rpid || rc=$?
  wait $spid || true
  cat send.err recv.err
  [ $rc -ne 0 ] || vmt_fail "the receive completed before its transport was killed"
  lvs -a vgb | grep -q r_thinsend_tmp || vmt_fail "the staging LV was not kept"
}

# --- full, interrupted twice --------------------------------------------------------------------
interrupted "" --pool vgb/pool vgb/r -- vga/s1
tok=$(thinsend-native recv --resume-token vgb/r)
grep -q "$tok" recv.err || vmt_fail "the token was not printed on stderr"
lvs vgb/r > /dev/null 2>&1 && vmt_fail "the target exists before the END"
interrupted "$tok" vgb/r -- --resume "$tok" vga/s1
tok2=$(thinsend-native recv --resume-token vgb/r)
[ "$tok2" != "$tok" ] || vmt_fail "the second interruption did not move the checkpoint"
# the first token is stale now: refused, nothing changed
if thinsend-native send --resume "$tok" vga/s1 | thinsend-native recv vgb/r 2> stale.err; then vmt_fail "an old token was accepted"; fi
cat stale.err
grep -q "older token" stale.err || vmt_fail "no clear message for an old token"
thinsend-native send --resume "$tok2" vga/s1 | thinsend-native recv vgb/r
vmt_assert_eq "$(sha_of vgb/r)" "$want1" "sha256 of the resumed full receive"
lvs -a vgb | grep -q thinsend_tmp && vmt_fail "staging LV left after completion"
if thinsend-native recv --resume-token vgb/r > /dev/null 2>&1; then vmt_fail "a token after completion"; fi

# --- incremental, interrupted, refused, aborted -------------------------------------------------
before=$(sha_of vgb/r)
lvchange -q -an vgb/r
interrupted "" vgb/r -- vga/s1 vga/s2
if thinsend-native send vga/s1 vga/s2 | thinsend-native recv vgb/r 2> plain.err; then vmt_fail "a plain stream onto a partial state was accepted"; fi
cat plain.err
grep -q "has a partial receive" plain.err || vmt_fail "no clear message for a plain stream onto a partial state"
thinsend-native recv --abort vgb/r
lvs -a vgb | grep -q thinsend_tmp && vmt_fail "staging LV left after --abort"
vmt_assert_eq "$(sha_of vgb/r)" "$before" "target unchanged after --abort"
if thinsend-native recv --resume-token vgb/r > /dev/null 2>&1; then vmt_fail "a token after --abort"; fi
# and the incremental still applies normally afterwards
lvchange -q -an vgb/r
thinsend-native send vga/s1 vga/s2 | thinsend-native recv vgb/r
vmt_assert_eq "$(sha_of vgb/r)" "$want2" "sha256 after the incremental"
