# The metadata snapshot is always released: SIGTERM and SIGINT while it is held and during the
# transfer; the receiving target is unchanged when the sender dies mid-stream; after SIGKILL the
# stale reservation is reported clearly by the next run.
set -eu
vmt_two_vgs
vmt_thin_pool vga/pool 512M 64k
vmt_thin_pool vgb/pool 512M 64k
lvcreate -q -V 256M -T vga/pool -n o
vmt_pattern_write /dev/vga/o 0 40000 o 1       # ~160 MiB to send
lvcreate -q -s -n s1 vga/o
held() { vmt_held_root vga pool; }
for sig in TERM INT HUP; do
  THINSEND_TEST_HOLD_SECS=20 thinsend-native send vga/s1 > /dev/null 2> err.txt &
  pid=$!
  i=0; while [ "$(held)" = "-" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  h=$(held); case $h in ''|-|*[!0-9]*) vmt_fail "SIG$sig: no metadata snapshot while sending";; esac
  kill -$sig $pid
  rc=0; wait $pid || rc=$?
  cat err.txt
  [ $rc -ne 0 ] || vmt_fail "SIG$sig: send exited 0"
  vmt_assert_eq "$(held)" "-" "metadata snapshot released after SIG$sig while held (rc $rc)"
done
# mid-transfer: the receiver gets a truncated stream and leaves its target as it was
lvcreate -q -V 256M -T vgb/pool -n r
before=$(sha256sum /dev/vgb/r | cut -d' ' -f1)
for sig in TERM INT; do
rm -f /tmp/p; mkfifo /tmp/p
thinsend-native recv --force vgb/r < /tmp/p 2> recv.err &
rpid=$!
thinsend-native send vga/s1 > /tmp/p 2> send.err &
spid=$!
sleep 1.5
kill -$sig $spid
wait $spid || true
rc=0; wait $rpid || rc=$?
cat send.err recv.err
[ $rc -ne 0 ] || vmt_fail "receiver accepted a stream cut by SIG$sig"
vmt_assert_eq "$(held)" "-" "no metadata snapshot after SIG$sig mid-transfer"
lvs -a vgb | grep -q thinsend_tmp && vmt_fail "temporary LV left behind by the receiver (SIG$sig)"
vmt_assert_eq "$(sha256sum /dev/vgb/r | cut -d' ' -f1)" "$before" "target unchanged after the sender died of SIG$sig"
grep -q "cleanup after signal.*failed" send.err && vmt_fail "the sender's cleanup failed: $(cat send.err)"
i=0; while lvs --noheadings -o lv_attr vga/s1 | grep -q '^ *V....a' && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
lvs --noheadings -o lv_attr vga/s1 | grep -q '^ *V....a' && vmt_fail "the snapshot the killed sender activated is still active (SIG$sig)"
done
# SIGTERM to the receiver itself mid-transfer: target unchanged, its temporary LV removed
mkfifo /tmp/p2
thinsend-native recv --force vgb/r < /tmp/p2 2> recv2.err &
rpid=$!
thinsend-native send vga/s1 > /tmp/p2 2> /dev/null &
spid=$!
sleep 1.5
kill -TERM $rpid
rc=0; wait $rpid || rc=$?
wait $spid || true
cat recv2.err
[ $rc -ne 0 ] || vmt_fail "receiver exited 0 after SIGTERM"
i=0; while lvs -a vgb | grep -q thinsend_tmp && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
lvs -a vgb | grep -q thinsend_tmp && vmt_fail "temporary LV left behind by a receiver killed with SIGTERM"
vmt_assert_eq "$(sha256sum /dev/vgb/r | cut -d' ' -f1)" "$before" "target unchanged after the receiver was killed"
vmt_assert_eq "$(held)" "-" "no metadata snapshot after the receiver was killed"
# SIGKILL while held: the reservation stays, and the next run says so and how to release it
THINSEND_TEST_HOLD_SECS=20 thinsend-native send vga/s1 > /dev/null 2>/dev/null &
pid=$!
i=0; while [ "$(held)" = "-" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -KILL $pid; wait $pid || true
h=$(held); case $h in ''|-|*[!0-9]*) vmt_fail "SIGKILL: expected a leaked metadata snapshot";; esac
if thinsend-native send vga/s1 > /dev/null 2> err.txt; then vmt_fail "send ran with a stale metadata snapshot"; fi
cat err.txt
grep -q "already held" err.txt || vmt_fail "stale reservation not reported"
grep -q "release_metadata_snap" err.txt || vmt_fail "no release instructions"
dmsetup message "$(vmt_pool_dm vga pool)" 0 release_metadata_snap
vmt_assert_eq "$(held)" "-" "released by hand"
thinsend-native send vga/s1 > /dev/null
