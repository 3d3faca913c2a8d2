# Refused, each with one clear message and the target unchanged (same sha256, same tags, no
# temporary LV left): a truncated stream, a corrupted stream, an incremental on the wrong base, a
# mounted target, a target too small, an empty stream.
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
thinsend-native send vga/s1 | thinsend-native recv --pool vgb/pool vgb/r
thinsend-native send vga/s1 vga/s2 > inc12.stream
thinsend-native send vga/s2 vga/s3 > inc23.stream
state() { lvchange -q -ay -K vgb/r; echo "$(sha256sum /dev/vgb/r | cut -d' ' -f1) $(lvs --noheadings -o tags vgb/r | tr -d ' ')"; }
before=$(state)
refused() { # WHAT EXPECTED_TEXT CMD...: must fail, say EXPECTED_TEXT, leave vgb/r as it was
  what=$1; text=$2; shift 2
  if "$@" > out.txt 2> err.txt; then vmt_fail "$what: accepted"; fi
  cat err.txt
  grep -q "$text" err.txt || vmt_fail "$what: message lacks '$text'"
  vmt_assert_eq "$(state)" "$before" "$what: target unchanged"
  lvs -a vgb | grep -q thinsend_tmp && vmt_fail "$what: temporary LV left behind"
  return 0
}
size=$(wc -c < inc12.stream)
head -c $((size / 2)) inc12.stream > trunc.stream
refused "truncated stream" "truncated\|Truncated\|ended" sh -c 'thinsend-native recv vgb/r < trunc.stream'
cp inc12.stream bad.stream
printf 'X' | dd of=bad.stream bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
refused "corrupted stream" "checksum\|crc" sh -c 'thinsend-native recv vgb/r < bad.stream'
refused "wrong base" "not at this stream's base" sh -c 'thinsend-native recv vgb/r < inc23.stream'
refused "empty stream" "empty\|Empty" sh -c 'thinsend-native recv vgb/r < /dev/null'
# a mounted target: a file system on another thin LV, mounted
# (a mounted file system keeps writing its own blocks, so "unchanged" means: the same LV (UUID),
# the same tags, still mounted, no temporary LV)
mkdir -p /mnt/m
lvcreate -q -V 64M -T vgb/pool -n m
mke2fs -q /dev/vgb/m
mount /dev/vgb/m /mnt/m
trap 'umount /mnt/m 2>/dev/null || true' EXIT
thinsend-native send vga/s1 > full.stream
mid=$(lvs --noheadings -o lv_uuid,lv_tags vgb/m | tr -d ' ')
if thinsend-native recv --force vgb/m < full.stream 2> err.txt; then vmt_fail "mounted target: accepted"; fi
cat err.txt
grep -q "in use" err.txt || vmt_fail "mounted target: unclear message"
vmt_assert_eq "$(lvs --noheadings -o lv_uuid,lv_tags vgb/m | tr -d ' ')" "$mid" "mounted target: same LV and tags"
grep -q /mnt/m /proc/mounts || vmt_fail "target no longer mounted"
lvs -a vgb | grep -q thinsend_tmp && vmt_fail "mounted target: temporary LV left behind"
umount /mnt/m
lvcreate -q -V 16M -T vgb/pool -n small
ssum=$(sha256sum /dev/vgb/small | cut -d' ' -f1)
if thinsend-native recv --force vgb/small < full.stream 2> err.txt; then vmt_fail "small target: accepted"; fi
cat err.txt
grep -q "smaller than the stream's volume" err.txt || vmt_fail "small target: unclear message"
vmt_assert_eq "$(sha256sum /dev/vgb/small | cut -d' ' -f1)" "$ssum" "small target unchanged"
# and the right stream still applies afterwards
thinsend-native recv vgb/r < inc12.stream
lvchange -q -ay -K vga/s2
vmt_assert_eq "$(sha256sum /dev/vgb/r | cut -d' ' -f1)" "$(sha256sum /dev/vga/s2 | cut -d' ' -f1)" "good stream after refusals"
