# Zero-block elision on real dm-thin: an LV whose mapped blocks are half zeros (written zeros, so
# provisioned on the source) is sent in full and lands on the target pool mapping only its non-zero
# blocks, with the same sha256; an incremental that zeroes written blocks sends them as UNMAP and the
# target's blocks are unmapped again. --no-zero-detect maps everything, as before; --compress zstd
# lands the same bytes.
set -eu
vmt_two_vgs
vmt_thin_pool vga/p64 512M 64k
vmt_thin_pool vgb/q64 512M 64k

sha() { sha256sum "$1" | cut -d' ' -f1; }
mapped_mib() { # VG/LV: data the thin LV maps, in whole MiB (data_percent of its virtual size)
  lvs --noheadings --nosuffix --units m -o lv_size,data_percent "$1" | awk '{printf "%d", $1 * $2 / 100 + 0.5}'
}
same() { # A B WHAT
  a=$(sha "/dev/$1"); b=$(sha "/dev/$2")
  [ "$a" = "$b" ] || vmt_fail "$3: $1 ($a) != $2 ($b)"
  echo "ok: $3: $1 = $2 ($a)"
}
lvcreate -q -V 64M -T vga/p64 -n o
vmt_pattern_write /dev/vga/o 0 2048 o 1                          # 8 MiB of data
dd if=/dev/zero of=/dev/vga/o bs=1M seek=8 count=8 oflag=direct status=none   # 8 MiB of zeros, provisioned
lvcreate -q -s -n s1 vga/o
lvchange -q -ay -K vga/s1
vmt_assert_eq "$(mapped_mib vga/s1)" 16 "source maps data and zero blocks"
thinsend-native send vga/s1 | thinsend-native recv --pool vgb/q64 vgb/r
lvchange -q -ay -K vgb/r
same vga/s1 vgb/r "full send with zero blocks"
vmt_assert_eq "$(mapped_mib vgb/r)" 8 "target maps only the non-zero blocks"
# incremental: 2 MiB of written data zeroed on the source -> UNMAP, unmapped on the target
dd if=/dev/zero of=/dev/vga/o bs=1M seek=2 count=2 oflag=direct status=none
lvcreate -q -s -n s2 vga/o
lvchange -q -ay -K vga/s2
thinsend-native send vga/s1 vga/s2 | thinsend-native recv vgb/r
lvchange -q -ay -K vgb/r
same vga/s2 vgb/r "incremental zeroing blocks"
vmt_assert_eq "$(mapped_mib vgb/r)" 6 "zeroed blocks unmapped on the target"
# without elision every mapped block lands; compressed, the same bytes
thinsend-native send --no-zero-detect vga/s1 | thinsend-native recv --pool vgb/q64 vgb/thick
lvchange -q -ay -K vgb/thick
same vga/s1 vgb/thick "--no-zero-detect"
vmt_assert_eq "$(mapped_mib vgb/thick)" 16 "--no-zero-detect maps every block"
thinsend-native send --compress zstd vga/s2 | thinsend-native recv --pool vgb/q64 vgb/z
lvchange -q -ay -K vgb/z
same vga/s2 vgb/z "--compress zstd"
