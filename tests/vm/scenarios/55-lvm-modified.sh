# A replica written after a receive is detected (issue 9): after a full and an incremental receive,
# a write to the target LV makes the next incremental refused, naming the change (ranges, bytes,
# first offset), with the target unchanged and no temporary left; `recv --rollback` then applies it
# and the target equals the source snapshot. The kept base (VG/LV_thinsend_base) is read-only,
# skipped at activation, tagged like the target and rotated on every receive; `--stats` shows the
# check's cost in metadata blocks read. A discard on the target is a modification too.
set -eu
vmt_two_vgs
vmt_thin_pool vga/pool 256M 64k
vmt_thin_pool vgb/pool 256M 64k
lvcreate -q -V 64M -T vga/pool -n o
vmt_pattern_write /dev/vga/o 0 3000 o 1
lvcreate -q -s -n s1 vga/o
vmt_pattern_write /dev/vga/o 500 300 o 2
lvcreate -q -s -n s2 vga/o
vmt_pattern_write /dev/vga/o 900 300 o 3
lvcreate -q -s -n s3 vga/o
vmt_pattern_write /dev/vga/o 1500 100 o 4
lvcreate -q -s -n s4 vga/o
thinsend-native send vga/s1 vga/s2 > inc12.stream
thinsend-native send vga/s2 vga/s3 > inc23.stream
thinsend-native send vga/s3 vga/s4 > inc34.stream

sha() { sha256sum "$1" | cut -d' ' -f1; }
same() { # LV_A LV_B WHAT: contents equal
  lvchange -q -ay -K "$1" "$2"
  a=$(sha "/dev/$1"); b=$(sha "/dev/$2")
  [ "$a" = "$b" ] || vmt_fail "$3: $1 ($a) != $2 ($b)"
  echo "ok: $3: $1 = $2 ($a)"
}
base_ok() { # WHAT: the kept base is read-only, activation-skipped, tagged like the target
  attr=$(lvs --noheadings -o lv_attr vgb/r_thinsend_base | tr -d ' ')
  case $attr in ?r???????k) ;; *) vmt_fail "$1: kept base attributes $attr (want read-only, skip activation)" ;; esac
  vmt_assert_eq "$(lvs --noheadings -o tags vgb/r_thinsend_base | tr -d ' ')" \
    "$(lvs --noheadings -o tags vgb/r | tr -d ' ')" "$1: kept base tagged like the target"
}

thinsend-native send vga/s1 | thinsend-native recv --pool vgb/pool vgb/r
same vga/s1 vgb/r "full receive"
base_ok "after the full receive"
thinsend-native recv --stats vgb/r < inc12.stream 2> stats.txt
cat stats.txt
grep -q "0 changed range(s), [0-9]* metadata blocks read" stats.txt || vmt_fail "no cost line for an unmodified target"
same vga/s2 vgb/r "incremental onto an unmodified target"
base_ok "after the incremental"
same vga/s2 vgb/r_thinsend_base "the kept base rotated to the received state"
lvchange -q -an vgb/r_thinsend_base

# write 2 x 4 KiB at 4 KiB block 700: one 64 KiB chunk (43) of the target changes
lvchange -q -ay vgb/r
vmt_pattern_write /dev/vgb/r 700 2 tamper 9
state() { echo "$(sha /dev/vgb/r) $(lvs --noheadings -o lv_uuid,lv_tags vgb/r | tr -d ' ')"; }
before=$(state)
if thinsend-native recv --stats vgb/r < inc23.stream > out.txt 2> err.txt; then vmt_fail "modified target: accepted"; fi
cat err.txt
grep -q "has been modified since the last receive" err.txt || vmt_fail "modified target: unclear message"
grep -q "1 range(s), 65536 bytes differ from vgb/r_thinsend_base, the first at byte 2818048" err.txt \
  || vmt_fail "modified target: the message does not name the change"
grep -q "\-\-rollback" err.txt || vmt_fail "modified target: no hint at --rollback"
grep -q "1 changed range(s), [0-9]* metadata blocks read" err.txt || vmt_fail "modified target: no cost line"
blocks=$(sed -n 's/.* \([0-9]*\) metadata blocks read.*/\1/p' err.txt | head -1)
[ "$blocks" -lt 64 ] || vmt_fail "the check read $blocks metadata blocks"
vmt_assert_eq "$(state)" "$before" "modified target left unchanged"
lvs -a vgb | grep -q thinsend_tmp && vmt_fail "temporary LV left behind"
vmt_assert_eq "$(vmt_held_root vgb pool)" "-" "no metadata snapshot left on vgb/pool"

thinsend-native recv --rollback vgb/r < inc23.stream
same vga/s3 vgb/r "--rollback applied the incremental"
base_ok "after --rollback"
lvs -a vgb | grep -q thinsend_tmp && vmt_fail "temporary LV left behind after --rollback"

# a discard on the target is a change too; --snapshot still keeps the received state
lvchange -q -ay vgb/r
blkdiscard -o $((8 << 20)) -l $((1 << 20)) /dev/vgb/r
if thinsend-native recv vgb/r < inc34.stream 2> err.txt; then vmt_fail "discarded target: accepted"; fi
cat err.txt
grep -q "16 range(s)\|1 range(s), 1048576 bytes" err.txt || vmt_fail "discarded target: the message does not name the change"
thinsend-native recv --rollback --snapshot r_at_s4 vgb/r < inc34.stream
same vga/s4 vgb/r "--rollback after a discard"
same vga/s4 vgb/r_at_s4 "--snapshot copy"
vmt_assert_eq "$(vmt_held_root vgb pool)" "-" "no metadata snapshot left on vgb/pool"
