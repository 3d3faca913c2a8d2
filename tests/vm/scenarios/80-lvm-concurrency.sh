# Two sends from different pools at once both proceed together; two sends from the same pool take
# turns (the per-pool lock), and both succeed.
set -eu
vmt_two_vgs
for vg in vga vgb; do
  vmt_thin_pool $vg/pool 128M 64k
  lvcreate -q -V 32M -T $vg/pool -n o
  vmt_pattern_write /dev/$vg/o 0 500 $vg 1
  lvcreate -q -s -n s1 $vg/o
  lvcreate -q -s -n s2 $vg/o
done
now() { cut -d' ' -f1 /proc/uptime; }
# Overlap is judged by what the kernel shows, not by wall time (TCG on a loaded host stretches every
# command): at some moment both pools hold a metadata snapshot at once.
both_held() { [ "$(vmt_held_root vga pool)" != - ] && [ "$(vmt_held_root vgb pool)" != - ]; }
t0=$(now)
THINSEND_TEST_HOLD_SECS=8 thinsend-native send vga/s1 > a.stream 2>/dev/null & p1=$!
THINSEND_TEST_HOLD_SECS=8 thinsend-native send vgb/s1 > b.stream 2>/dev/null & p2=$!
overlap=no
while kill -0 $p1 2>/dev/null || kill -0 $p2 2>/dev/null; do
  if both_held; then overlap=yes; break; fi
  sleep 0.2
done
wait $p1; wait $p2
t1=$(now)
echo "two pools: $(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}') s, both held at once: $overlap"
[ $overlap = yes ] || vmt_fail "sends on different pools did not hold their metadata snapshots at the same time"
t0=$(now)
THINSEND_TEST_HOLD_SECS=5 thinsend-native send vga/s1 > c.stream 2>/dev/null & p1=$!
THINSEND_TEST_HOLD_SECS=5 thinsend-native send vga/s2 > d.stream 2>/dev/null & p2=$!
wait $p1; wait $p2
t1=$(now)
ser=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
echo "one pool: $ser s"
awk -v d="$ser" 'BEGIN{exit !(d >= 10)}' || vmt_fail "sends on one pool did not take turns ($ser s)"
for f in a b c d; do [ -s $f.stream ] || vmt_fail "$f.stream empty"; done
thinsend-native inspect --verify < c.stream > /dev/null
thinsend-native inspect --verify < d.stream > /dev/null
vmt_assert_eq "$(vmt_held_root vga pool)" "-" "no metadata snapshot left"
