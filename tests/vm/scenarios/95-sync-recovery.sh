# `sync` when things go wrong, through a real ssh server (dropbear on 127.0.0.1:2222) (issue 12):
# - DST's newest snapshot and its kept base deleted by hand: the older common snapshot is found and
#   DST returned to it; all of them deleted: "no common snapshot", and --allow-full starts over;
# - DST modified by hand: refused before anything moves, --rollback recovers;
# - -r over three LVs in two pools, one DST pool too small: the other two succeed, exit status 1,
#   the JSON names the failed one and why.
set -eu
vmt_two_vgs
vmt_thin_pool vga/pool 256M 64k
vmt_thin_pool vga/pool2 128M 64k
vmt_thin_pool vgb/pool 256M 64k
vmt_thin_pool vgb/pool2 16M 64k
vmt_sshd
H=root@127.0.0.1
vmt_sync_helpers

lvcreate -q -V 64M -T vga/pool -n d
vmt_pattern_write /dev/vga/d 0 2000 d 1
for i in 1 2 3; do
  [ "$i" = 1 ] || vmt_pattern_write /dev/vga/d $((i * 700)) 100 d "$i"
  tsync --keep 2 --format json vga/d $H:vgb/d > run$i.json || { cat run$i.json; vmt_fail "push run $i"; }
  cat run$i.json
done
equal "vga/$(field snapshot run3.json)" vgb/d "after three runs"

# DST's newest sync snapshot and its kept base deleted by hand: the older common snapshot (run 2's,
# which both sides keep) is found by identity and DST returned to it first
lvremove -q -f "vgb/$(field dst_snapshot run3.json)" vgb/d_thinsend_base
vmt_pattern_write /dev/vga/d 3000 20 d 7
tsync --keep 2 --format json vga/d $H:vgb/d > del.json || { cat del.json; vmt_fail "older common base"; }
cat del.json
vmt_assert_eq "$(field base del.json)" "$(field snapshot run2.json)" "the older common snapshot (run 2's)"
vmt_assert_eq "$(field rewound_to del.json)" "$(field dst_snapshot run2.json)" "DST returned to run 2's snapshot"
equal "vga/$(field snapshot del.json)" vgb/d "incremental from the older common snapshot"
# all of them deleted: no common snapshot, said clearly; --allow-full starts over
for s in $(sync_snaps vgb d); do lvremove -q -f "vgb/$s"; done
lvremove -q -f vgb/d_thinsend_base
if tsync vga/d $H:vgb/d > none.txt 2>&1; then cat none.txt; vmt_fail "no common base: accepted"; fi
cat none.txt
grep -q "no common snapshot" none.txt && grep -q -- "--allow-full" none.txt || vmt_fail "no common base: unclear"
tsync --allow-full --keep 2 --format json vga/d $H:vgb/d > full.json || { cat full.json; vmt_fail "--allow-full"; }
vmt_assert_eq "$(field mode full.json)" full "--allow-full mode"
equal "vga/$(field snapshot full.json)" vgb/d "--allow-full"

# DST modified by hand: refused before anything moves; --rollback recovers
lvchange -q -ay vgb/d
vmt_pattern_write /dev/vgb/d 10 2 tamper 9
before=$(sync_snaps vga d | wc -l)
if tsync vga/d $H:vgb/d > mod.txt 2>&1; then cat mod.txt; vmt_fail "modified DST: accepted"; fi
cat mod.txt
grep -q "has been modified since the last receive" mod.txt || vmt_fail "modified DST: unclear message"
vmt_assert_eq "$(sync_snaps vga d | wc -l)" "$before" "modified DST: no snapshot taken on SRC"
tsync --rollback --keep 2 --format json vga/d $H:vgb/d > rb.json || { cat rb.json; vmt_fail "--rollback"; }
equal "vga/$(field snapshot rb.json)" vgb/d "--rollback"

# -r over three LVs in two pools (vga/x left out by --exclude); DST's pool2 is too small for one
lvcreate -q -V 32M -T vga/pool -n w
vmt_pattern_write /dev/vga/w 0 1000 w 1
lvcreate -q -V 64M -T vga/pool2 -n big
vmt_pattern_write /dev/vga/big 0 8000 big 1
lvcreate -q -V 8M -T vga/pool -n x
set +e
tsync -r --keep 2 --exclude x --format json vga $H:vgb > r.json
rc=$?
set -e
cat r.json
vmt_assert_eq "$rc" 1 "-r with one failing volume: exit status"
grep -q '"ok":false,"failed":1' r.json || vmt_fail "-r: the JSON does not count one failure"
grep -q '"src":"vga/big","dst":"root@127.0.0.1:vgb/big","ok":false,"error":"DST pool vgb/pool2 has' r.json \
  || vmt_fail "-r: the JSON does not say vga/big failed for DST pool space"
equal "vga/$(sync_snaps vga w | tail -1)" vgb/w "-r: vga/w"
equal "vga/$(sync_snaps vga d | tail -1)" vgb/d "-r: vga/d"
lvs vgb/big > /dev/null 2>&1 && vmt_fail "-r: vgb/big was created"
lvs vgb/x > /dev/null 2>&1 && vmt_fail "-r: vgb/x was synced despite --exclude"
vmt_assert_eq "$(vmt_held_root vga pool) $(vmt_held_root vgb pool)" "- -" "no metadata snapshot left"
lvs -a vga vgb
