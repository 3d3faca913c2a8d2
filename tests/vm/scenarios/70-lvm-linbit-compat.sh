# Drop-in for LINSTOR: the binary invoked as thin_send/thin_recv. The real LINBIT 1.1.3 vectors
# received with `thin_recv vg/lv` give the images their README describes; `thin_send vg/a vg/b`
# streams are received by `thinsend-native recv` and thinsend-native's LINBIT streams by
# `thin_recv`, each giving the source's image; `thin_send -v` satisfies LINSTOR's version check.
set -eu
vmt_two_vgs
vmt_thin_pool vga/pool 256M 64k
vmt_thin_pool vgb/pool 256M 64k
v=$(thin_send -v); echo "thin_send -v: $v"
echo "$v" | grep -Eq '^1\.1' || vmt_fail "version '$v' would not satisfy LINSTOR (>= 0.24)"
sha() { lvchange -q -ay -K "$1"; sha256sum "/dev/$1" | cut -d' ' -f1; }
# the real vectors, onto a fresh 32 MiB thin LV, as LINSTOR creates it before thin_recv
lvcreate -q -V 32M -T vgb/pool -n v
thin_recv vgb/v < /files/full.stream
vmt_assert_eq "$(sha vgb/v)" "$VMT_LINBIT_FULL_SHA" "full.stream through thin_recv"
thin_recv vgb/v < /files/diff.stream
vmt_assert_eq "$(sha vgb/v)" "$VMT_LINBIT_DIFF_SHA" "diff.stream through thin_recv"
thin_recv vgb/v < /files/minimal.stream
vmt_assert_eq "$(sha vgb/v)" "$VMT_LINBIT_DIFF_SHA" "minimal.stream changes nothing"
# empty input: thin_recv's rule (exit 0 with --accept-stream-format=auto, 10 with 1.1)
thin_recv vgb/v < /dev/null || vmt_fail "empty input refused in auto mode"
rc=0; thin_recv --accept-stream-format=1.1 vgb/v < /dev/null || rc=$?
vmt_assert_eq "$rc" 10 "empty input with --accept-stream-format=1.1"
rc=0; thin_recv --bogus vgb/v < /dev/null 2>/dev/null || rc=$?
vmt_assert_eq "$rc" 10 "unknown option"
# thin_send -> thinsend-native recv, and thinsend-native send --stream-format linbit -> thin_recv
lvcreate -q -V 64M -T vga/pool -n o
vmt_pattern_write /dev/vga/o 0 2000 o 1
lvcreate -q -s -n s1 vga/o
vmt_pattern_write /dev/vga/o 300 200 o 2
blkdiscard -o $((6 << 20)) -l $((1 << 20)) /dev/vga/o
lvcreate -q -s -n s2 vga/o
lvcreate -q -V 64M -T vgb/pool -n a
thin_send vga/s1 | thinsend-native recv vgb/a
vmt_assert_eq "$(sha vgb/a)" "$(sha vga/s1)" "thin_send full -> thinsend-native recv"
thin_send vga/s1 vga/s2 | thinsend-native recv vgb/a
vmt_assert_eq "$(sha vgb/a)" "$(sha vga/s2)" "thin_send incremental -> thinsend-native recv"
lvcreate -q -V 64M -T vgb/pool -n b
thinsend-native send --stream-format linbit vga/s1 | thin_recv vgb/b
vmt_assert_eq "$(sha vgb/b)" "$(sha vga/s1)" "thinsend-native send (linbit) full -> thin_recv"
thinsend-native send --stream-format linbit vga/s1 vga/s2 | thin_recv vgb/b
vmt_assert_eq "$(sha vgb/b)" "$(sha vga/s2)" "thinsend-native send (linbit) incremental -> thin_recv"
vmt_assert_eq "$(vmt_held_root vga pool)" "-" "no metadata snapshot left"
