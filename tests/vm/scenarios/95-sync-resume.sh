# `sync` killed mid-transfer (issue 12, with the resumable receive of issue 11): the sync process
# is killed (SIGKILL) once the receiving side has made a checkpoint; the next run finds the partial
# state (recv --resume-token), continues it with the same snapshot (send --resume), reports mode
# "resumed" and sends less than the whole stream; both sides end consistent (sha256), and a
# following incremental works.
set -eu
vmt_two_vgs
vmt_thin_pool vga/pool 512M 64k
vmt_thin_pool vgb/pool 512M 64k
vmt_sshd
H=root@127.0.0.1
vmt_sync_helpers
lvcreate -q -V 128M -T vga/pool -n d
vmt_pattern_write /dev/vga/d 0 30000 d 1      # ~117 MiB to send

# run directly (not through the tsync function) so that $! is the sync process itself
thinsend-native sync --ssh-cmd "$VMT_SSH_CMD" --remote-bin "$VMT_REMOTE_BIN" --keep 2 --format json \
  vga/d $H:vgb/d > killed.json 2> killed.err &
pid=$!
# wait for a checkpoint past the first one (made at the HEADER): the token changes
i=0; t=""; first=""
while [ $i -lt 1800 ]; do
  t=$(thinsend-native recv --resume-token vgb/d 2>/dev/null || true)
  [ -z "$first" ] && first=$t
  [ -n "$t" ] && [ "$t" != "$first" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1; i=$((i + 1))
done
[ -n "$t" ] && [ "$t" != "$first" ] || { cat killed.json killed.err; vmt_fail "no checkpoint before the run ended"; }
sleep 0.3
kill -KILL $pid
wait $pid || true
# the receiving side sees EOF, keeps its partial state and exits (the staging LV is held until then)
i=0
while ps | grep -v grep | grep -q "thinsend-native recv"; do
  i=$((i + 1)); [ $i -lt 600 ] || vmt_fail "the receiver of the killed run did not exit"; sleep 0.1
done
tok=$(thinsend-native recv --resume-token vgb/d) || vmt_fail "no partial state after the kill"
echo "partial state kept, token $(echo "$tok" | cut -c1-40)..."
lvs vgb/d > /dev/null 2>&1 && vmt_fail "the target exists before the END"

tsync --keep 2 --format json vga/d $H:vgb/d > resumed.json || { cat resumed.json; vmt_fail "resumed run"; }
cat resumed.json
vmt_assert_eq "$(field mode resumed.json)" resumed "the next run's mode"
snap=$(field snapshot resumed.json)
a=$(sha "vga/$snap"); b=$(sha vgb/d)
vmt_assert_eq "$b" "$a" "DST after the resumed run equals SRC's snapshot $snap"
sent=$(field stream_bytes resumed.json)
# the volume's data alone is 30000 x 4 KiB; the resumed run skips at least a checkpoint's worth
[ "$sent" -lt $((122880000 - (4 << 20))) ] || vmt_fail "the resumed run sent $sent bytes, nearly the whole stream"
echo "ok: the resumed run sent $sent bytes"
if thinsend-native recv --resume-token vgb/d > /dev/null 2>&1; then vmt_fail "a partial state left after the resumed run"; fi

vmt_pattern_write /dev/vga/d 100 100 d 2
tsync --keep 2 --format json vga/d $H:vgb/d > inc.json || { cat inc.json; vmt_fail "incremental after the resume"; }
vmt_assert_eq "$(field mode inc.json)" incremental "the run after"
vmt_assert_eq "$(field base inc.json)" "$snap" "its base is the resumed snapshot"
vmt_assert_eq "$(sha vgb/d)" "$(sha "vga/$(field snapshot inc.json)")" "DST after the incremental"
